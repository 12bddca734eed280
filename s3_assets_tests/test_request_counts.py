"""What loading, listing and deleting cost in S3 requests, counted at a proxy in front of the
real SeaweedFS (counts, never times): each costs what its work costs (issue 20 §4)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from s3_assets.lib import loading
from s3_assets.lib.cleanup import clean
from s3_assets.lib.loading import arrow_filesystem, arrow_options, load_frames
from s3_assets.lib.prefix_lock import PrefixLocks
from s3_assets_tests.fault_proxy import FaultProxy


class CountingProxy(FaultProxy):
    """The fault proxy passing everything, counting the TCP connections it accepts too."""

    def __init__(self, upstream_port: int):
        super().__init__(upstream_port)
        self.connections = 0
        accept = self.server.process_request

        def counted(request, address):
            with self.lock:
                self.connections += 1
            accept(request, address)

        self.server.process_request = counted  # type: ignore[method-assign]

    def methods(self) -> list[str]:
        with self.lock:
            return [method for method, _, _ in self.requests]


@pytest.fixture
def proxy(s3_server):
    with CountingProxy(urlsplit(s3_server.state.endpoint_url).port) as counting:
        yield counting


@pytest.fixture
def client(s3_server, proxy):
    creds = s3_server.server.credentials()
    return boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
                        config=Config(s3={"addressing_style": "path"}, max_pool_connections=32))


# -- loading --------------------------------------------------------------------------------
def test_loading_small_files_costs_one_get_each(s3, bucket, client, proxy, origin):
    keys = {f"f{i}": f"raw/f{i:03d}.csv" for i in range(40)}
    for index, key in enumerate(keys.values()):
        s3.put_object(Bucket=bucket, Key=key, Body=b"a,b\n" + b"1,2\n" * index)
    sizes = {key: 4 + 4 * index for index, key in enumerate(keys.values()) if index % 2}  # half of them known
    frames = load_frames(client, bucket, keys, sizes, origin=origin)
    assert [frames[name].shape for name in keys] == [(index, 2) for index in range(40)]
    assert proxy.methods() == ["GET"] * 40  # was a HEAD and a GET each: 80


def test_a_small_file_that_grew_past_streaming_since_the_listing_is_still_read_whole(s3, bucket, client, proxy,
                                                                                    monkeypatch, origin):
    monkeypatch.setattr(loading, "STREAM_FROM", 100)
    body = b"a,b\n" + b"1,2\n" * 100
    s3.put_object(Bucket=bucket, Key="raw/grown.csv", Body=body)
    frame = load_frames(client, bucket, {"g": "raw/grown.csv"}, {"raw/grown.csv": 8}, origin=origin)["g"]
    assert frame.shape == (100, 2)
    assert proxy.methods() == ["GET", "HEAD", "GET"]  # the GET said 404 bytes: block by block through arrow


def test_one_filesystem_and_connection_pool_per_process(s3, bucket, client, proxy, monkeypatch, origin):
    monkeypatch.setattr(loading, "STREAM_FROM", 16)  # these files take arrow's path
    keys = {f"f{i}": f"raw/big{i}.csv" for i in range(8)}
    body = b"a,b\n" + b"1,2\n" * 50
    for key in keys.values():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    sizes = dict.fromkeys(keys.values(), len(body))
    load_frames(client, bucket, keys, sizes, max_workers=4, origin=origin)
    first = proxy.connections
    assert first >= 1
    for _ in range(3):
        frames = load_frames(client, bucket, keys, sizes, max_workers=4, origin=origin)
        assert all(frame.shape == (50, 2) for frame in frames.values())
    assert proxy.connections == first  # the same pool's connections: none new (was 4 or more each call)
    assert sorted(proxy.methods()) == ["GET"] * 32 + ["HEAD"] * 32


def test_the_filesystem_cache_is_shared_across_threads_and_holds_no_secret(client, origin):
    options = arrow_options(client, origin)
    assert options is not None
    with ThreadPoolExecutor(16) as pool:
        made = list(pool.map(lambda _: arrow_filesystem(options, 4), range(64)))
    assert all(filesystem is made[0] for filesystem in made)
    secret = options["secret_key"]
    with loading._filesystems_lock:
        assert all(secret.encode() not in key and secret not in repr(key) for key in loading._filesystems)
    assert secret not in repr(made[0])


# -- deleting -------------------------------------------------------------------------------
def test_each_delete_batch_is_sent_while_the_next_page_is_listed(s3, bucket, s3_server):
    """The listing's second page is held at the proxy until the first DeleteObjects arrives:
    pipelined, that request comes while the listing waits; listed first and deleted after (the
    old way), it never does (the page is released after 60 s and the test fails)."""
    keys = [f"ins_dataset/raw/f{i:05d}.csv" for i in range(2500)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b"x"), keys))
    s3.put_object(Bucket=bucket, Key="ins_dataset_old/keep.csv", Body=b"x")
    first_delete = threading.Event()
    held: list[bool] = []

    def on_request(method: str, path: str) -> None:
        if method == "POST" and "delete" in path:
            first_delete.set()
        if method == "GET" and "continuation-token=" in path and not held:
            held.append(first_delete.wait(timeout=60))  # released at once when pipelined

    with FaultProxy(urlsplit(s3_server.state.endpoint_url).port, on_request=on_request) as proxy:
        creds = s3_server.server.credentials()
        client = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                              aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
                              config=Config(s3={"addressing_style": "path"}))
        report = clean(client, bucket, ["ins_dataset/"], dry_run=False)
        requests = [(method, path) for method, path, _ in proxy.requests]
    assert held == [True]  # the first batch went out while the listing was still at its second page
    assert report.count == 2500 and not report.remaining
    assert [key["Key"] for key in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["ins_dataset_old/keep.csv"]
    assert len([method for method, _ in requests if method == "POST"]) == 3
    # versioning check, 3 pages, 3 batches, the confirming listing (was 21: 16 listing requests)
    assert len(requests) == 8


def test_a_held_cleanup_sends_the_same_requests(s3, bucket, client, proxy):
    """The cleanup's lease is checked before each delete request locally: with the check (its
    note taken outside the proxy) the same requests go as without."""
    def sent(check) -> list[str]:
        put_keys = [f"ins_dataset/raw/f{i:04d}.csv" for i in range(1200)] + ["ins_dataset/odd\x01key"]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b"x"), put_keys))
        with proxy.lock:
            proxy.requests.clear()
        report = clean(client, bucket, ["ins_dataset/"], dry_run=False, check=check)
        assert report.count == len(put_keys)
        return sorted(proxy.methods())

    unheld = sent(None)
    with PrefixLocks(s3, bucket).cleanup("counted-cleanup", ["ins_dataset/"], what="t") as hold:
        held = sent(hold.check_before)
    # 2 DeleteObjects batches and 1 DeleteObject (the key XML cannot carry); the rest are GETs
    assert held == unheld and held.count("POST") == 2 and held.count("DELETE") == 1 and len(held) == 7
