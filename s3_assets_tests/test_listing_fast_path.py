"""The listing's fast path on canned ListObjectsV2 pages served over loopback HTTP (botocore
signs, sends and parses as it would against S3), and through a proxy in front of the real
SeaweedFS that rewrites the XML namespace: every server's answer gives every object, or
botocore's own parser decides."""

from __future__ import annotations

import http.server
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, quote_plus, urlsplit

import boto3
import pytest
from botocore.config import Config

from s3_assets.lib import listing as listing_module
from s3_assets.lib.errors import S3OperationError
from s3_assets.lib.listing import list_objects, parse_page_fast
from s3_assets.lib.text import printable
from s3_assets_tests.fault_proxy import FaultProxy
from s3_assets_tests.test_hostile_keys import UNSAFE

AWS_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
GCS_NS = "http://doc.s3.amazonaws.com/2006-03-01"
HOSTILE = ["p/plain.csv", "p/with space.csv", "p/plus+sign", "p/donn\u00e9es", "p/emoji\U0001f600",
           "p/new\nline", "p/tab\there", "p/percent%41", "p/amp&<lt>\"q\"", "p/```", "p/\u202eevil"]


def contents_xml(key: str, url: bool, index: int) -> str:
    shown = quote_plus(key, safe="/") if url else (key.replace("&", "&amp;").replace("<", "&lt;")
                                                       .replace(">", "&gt;").replace("\n", "&#10;")
                                                       .replace("\t", "&#9;"))
    return (f"<Contents><Key>{shown}</Key><LastModified>2026-11-24T10:00:0{index % 10}.000Z</LastModified>"
            f"<ETag>&quot;etag{index}&quot;</ETag><Size>{index}</Size><StorageClass>STANDARD</StorageClass></Contents>")


def page_xml(keys: list[str], *, ns: str | None, url: bool, token: str | None, key_count: int | None = None,
             start: int = 0) -> bytes:
    xmlns = f' xmlns="{ns}"' if ns is not None else ""
    count = len(keys) if key_count is None else key_count
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult{xmlns}><Name>canned</Name>',
             "<Prefix>p/</Prefix>", f"<KeyCount>{count}</KeyCount>" if count >= 0 else "",
             "<MaxKeys>1000</MaxKeys>", "<EncodingType>url</EncodingType>" if url else "",
             f"<IsTruncated>{'true' if token else 'false'}</IsTruncated>",
             f"<NextContinuationToken>{token}</NextContinuationToken>" if token else ""]
    parts += [contents_xml(key, url, start + i) for i, key in enumerate(keys)]
    parts.append("</ListBucketResult>")
    return "".join(parts).encode()


class CannedS3:
    """Loopback HTTP server answering ListObjectsV2 with canned pages chained by tokens."""

    def __init__(self, pages: list[bytes]):
        self.pages = pages
        self.requests: list[str] = []
        canned = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                canned.requests.append(self.path)
                query = parse_qs(urlsplit(self.path).query)
                index = int(query.get("continuation-token", ["page0"])[0].removeprefix("page"))
                body = canned.pages[index]
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.client = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{self.server.server_address[1]}", region_name="us-east-1",
            aws_access_key_id="canned", aws_secret_access_key="canned-secret",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def canned():
    servers = []

    def make(pages):
        servers.append(CannedS3(pages))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def paged(keys, *, ns, url, per_page=4, **overrides):
    chunks = [keys[i:i + per_page] for i in range(0, len(keys), per_page)] or [[]]
    return [page_xml(chunk, ns=ns, url=url, token=f"page{i + 1}" if i + 1 < len(chunks) else None,
                     start=i * per_page, **overrides) for i, chunk in enumerate(chunks)]


@pytest.mark.parametrize("ns", [AWS_NS, None, GCS_NS], ids=["aws-namespace", "no-namespace", "gcs-namespace"])
@pytest.mark.parametrize("url", [True, False], ids=["encoding-url", "plain"])
def test_every_namespace_and_encoding_gives_every_row(canned, ns, url):
    server = canned(paged(HOSTILE, ns=ns, url=url))
    listing = list_objects(server.client, "canned", "p/", parallelism=1)
    assert sorted(listing["key"]) == sorted(HOSTILE)
    rows = listing.set_index("key")
    assert rows.loc["p/emoji\U0001f600", "size"] == HOSTILE.index("p/emoji\U0001f600")
    assert rows.loc["p/plain.csv", "etag"] == "etag0"
    assert str(rows.loc["p/new\nline", "last_modified"]) == "2026-11-24 10:00:05+00:00"
    assert len(server.requests) == 3  # one request per page: no fallback needed


def test_the_fast_path_reads_what_botocore_reads(canned):
    # The same pages through botocore's own parser (no hook) give the same rows.
    server = canned(paged(HOSTILE, ns=GCS_NS, url=True))
    fast = list_objects(server.client, "canned", "p/", parallelism=1)
    plain = [o for page in server.client.get_paginator("list_objects_v2").paginate(Bucket="canned", Prefix="p/")
             for o in page.get("Contents", [])]
    assert sorted(fast["key"]) == sorted(o["Key"] for o in plain)
    by_key = fast.set_index("key")
    for o in plain:
        assert by_key.loc[o["Key"], "size"] == o["Size"] and by_key.loc[o["Key"], "etag"] == o["ETag"].strip('"')
        assert by_key.loc[o["Key"], "last_modified"] == o["LastModified"]


@pytest.mark.parametrize("case", ["key-count-too-high", "key-count-too-low", "key-count-missing"])
def test_a_page_the_fast_path_would_misread_goes_to_botocore(canned, case):
    key_count = {"key-count-too-high": 9, "key-count-too-low": 1, "key-count-missing": -1}[case]
    keys = ["p/a", "p/b", "p/c"]
    server = canned([page_xml(keys, ns=GCS_NS, url=False, token=None, key_count=key_count)])
    assert parse_page_fast(server.pages[0]) is None  # the page is not taken on the fast path...
    listing = list_objects(server.client, "canned", "p/")
    assert sorted(listing["key"]) == keys  # ...and botocore's parser gives the right rows


def test_a_page_botocore_reads_differently_is_reread_by_botocore(canned, monkeypatch):
    # If botocore's parse of the rest of the page disagrees with the rows taken (here: the fast
    # path is made to miscount), the page is requested again and botocore's parser decides.
    real = parse_page_fast

    def miscount(body):
        taken = real(body)
        return None if taken is None else (taken[0].slice(0, 1), taken[1])

    monkeypatch.setattr(listing_module, "parse_page_fast", miscount)
    server = canned([page_xml(["p/a", "p/b", "p/c"], ns=AWS_NS, url=False, token=None)])
    assert sorted(list_objects(server.client, "canned", "p/")["key"]) == ["p/a", "p/b", "p/c"]
    assert len(server.requests) == 2


def test_truncated_without_a_token_is_an_error_not_a_short_listing(canned):
    body = page_xml(["p/a"], ns=AWS_NS, url=False, token=None).replace(
        b"<IsTruncated>false</IsTruncated>", b"<IsTruncated>true</IsTruncated>")
    server = canned([body])
    with pytest.raises(S3OperationError, match="truncated but gives no continuation token"):
        list_objects(server.client, "canned", "p/")


@pytest.mark.parametrize("fault", ["truncated-without-token", "repeated-token"])
def test_a_broken_listing_names_its_prefix_as_text(canned, fault):
    # The prefix is outside text too: the error shows it escaped, never a raw control.
    root = "p/\x1b[2J\n\u202e\\/"
    first = page_xml(["p/a"], ns=AWS_NS, url=False, token="page1")
    if fault == "truncated-without-token":
        pages = [first.replace(b"<NextContinuationToken>page1</NextContinuationToken>", b"")]
    else:
        pages = [first, page_xml(["p/b"], ns=AWS_NS, url=False, token="page1")]
    server = canned(pages)
    with pytest.raises(S3OperationError) as raised:
        list_objects(server.client, "canned", root)
    message = str(raised.value)
    assert printable(root) in message and not UNSAFE.search(message), message
    assert ("no continuation token" if fault == "truncated-without-token" else "repeats a continuation token") \
        in message


def hook_registered(client) -> bool:
    return listing_module._HOOK_ID in client.meta.events._emitter._unique_id_handlers


def test_hook_only_during_the_listing_and_only_in_its_threads(canned):
    keys = [f"p/k{i:03d}" for i in range(40)]
    server = canned(paged(keys, ns=AWS_NS, url=False, per_page=5))
    client = server.client
    assert not hook_registered(client)
    seen_during: list[bool] = []
    others: list[int] = []
    stop = threading.Event()

    def other_user():  # another user of the shared client: always botocore's full parse
        while not stop.is_set():
            page = client.list_objects_v2(Bucket="canned", Prefix="p/")
            others.append(len(page.get("Contents", [])))
            seen_during.append(hook_registered(client))

    thread = threading.Thread(target=other_user)
    thread.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: list_objects(client, "canned", "p/", parallelism=1), range(12)))
    finally:
        stop.set()
        thread.join()
    assert all(sorted(r["key"]) == keys for r in results)
    assert others and all(count == 5 for count in others)  # never stripped by the hook
    assert not hook_registered(client)  # gone after the listings, however they overlapped


def test_hook_is_removed_after_a_failed_listing(canned):
    server = canned([b"<Error><Code>InternalError</Code></Error>"])
    with pytest.raises(Exception):  # noqa: B017 - any failure; what matters is the hook after it
        list_objects(server.client, "canned", "p/")
    assert not hook_registered(server.client)


@pytest.mark.parametrize("namespace", [GCS_NS, None], ids=["gcs-namespace", "no-namespace"])
def test_real_server_answering_in_another_namespace_lists_every_object(s3_server, s3, bucket, namespace):
    keys = [f"ins_dataset/part-{i:04d}.csv" for i in range(25)] + ["ins_dataset/with space", "ins_dataset/\u00e9\U0001f600"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    replacement = f'xmlns="{namespace}"'.encode() if namespace else b""

    rewritten = []

    def rewrite(method: str, path: str, body: bytes) -> bytes:
        if method == "GET" and b"<ListBucketResult" in body:
            rewritten.append(path)
            return body.replace(f'xmlns="{AWS_NS}"'.encode(), replacement)
        return body

    with FaultProxy(urlsplit(s3_server.state.endpoint_url).port, rewrite=rewrite) as proxy:
        creds = s3_server.server.credentials()
        client = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                              aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
                              config=Config(s3={"addressing_style": "path"}))
        raw = client.list_objects_v2(Bucket=bucket, Prefix="ins_dataset/", MaxKeys=1)
        assert raw["KeyCount"] == 1  # the proxy really does answer in the other namespace
        listing = list_objects(client, bucket, "ins_dataset/", page_size=10)
    assert sorted(listing["key"]) == sorted(keys)
    assert len(rewritten) >= 4  # every page came in the other namespace (25+ objects, 10 a page)
    assert (listing["size"] == listing["key"].str.encode("utf-8").str.len()).all()
