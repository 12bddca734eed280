"""Parallel listing against the real server: on awkward key sets it gives exactly the table
that one paginator gives (botocore's own, no fast path), sorted, and it never spends more
than one request where one paginator would need one page."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from s3_assets.lib.listing import char_boundaries, list_objects
from s3_assets_tests.fault_proxy import FaultProxy

ROOT = "ins_dataset/"
AWKWARD = [  # relative to ROOT; seeded one by one, in this order
    "a", "a-b", "a.b", "a0", "a/", "a/x", "a/x/", "a/x/y", "b/", "b//c", "b///d", "c", "c-", "c/", "c/d",
    "empty/", "f0", "f1", "f1/", "f1/x", "f10", "f1-", "f1.", "f0z", "f2", "f9", "fz", "f~",
    "\u00e9", "\uffff", "\U0001f600", "\U0001f600/x", "x", "x/y", "x0", "zz/", "zz/zz/", "zz/zz/zz",
    "with space/a b", "plus+/a+b", "percent%/100%", "new\nline", "tab\tkey", "```/`x`",
]
FILLER = [f"m/fill-{i:05d}" for i in range(1200)]  # so that the awkward keys are listed in parallel
FLAT = [f"raw/f{i:05d}.csv" for i in range(1, 1202)]
DATED = [f"raw/2026/{m:02d}/{d:02d}/part-{p:04d}.csv" for m in (1, 2, 11, 12) for d in (1, 2, 15, 28, 31)
         for p in range(1, 16)]


def seed(s3, bucket: str, keys: list[str], one_by_one: bool) -> None:
    def put(key: str) -> None:
        try:
            s3.put_object(Bucket=bucket, Key=ROOT + key, Body=key.encode())
        except ClientError as error:  # SeaweedFS is a tree: a file cannot also be a folder
            if error.response["Error"]["Code"] != "ExistingObjectIsFile":
                raise

    if one_by_one:  # SeaweedFS can drop `a` when `a` and `a/x` are PUT at once (RELIABILITY.md)
        for key in keys:
            put(key)
    else:
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, keys))


def reference(s3, bucket: str) -> list[tuple]:
    """botocore's own paginator and parser, sorted by UTF-8 bytes as S3 sorts."""
    rows = [(o["Key"], o["Size"], o["ETag"].strip('"'), o["LastModified"])
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=ROOT)
            for o in page.get("Contents", [])]
    return sorted(rows, key=lambda row: row[0].encode())


def table(listing) -> list[tuple]:
    return list(zip(listing["key"], listing["size"], listing["etag"], listing["last_modified"], strict=True))


@pytest.fixture(scope="module")
def seeded(s3_server):
    """The key sets, each in its own bucket, seeded once for the module."""
    s3 = s3_server.client()
    buckets = {}
    for name, keys, one_by_one in [("awkward", AWKWARD, True), ("flat", FLAT, False), ("dated", DATED, False),
                                   ("empty", [], True), ("one", ["only.csv"], True), ("page", FLAT[:1000], False),
                                   ("page+1", FLAT[:1001], False), ("flat150", FLAT[:150], False)]:
        bucket = f"par-{name.replace('+', '-')}-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        seed(s3, bucket, keys, one_by_one)
        buckets[name] = bucket
    seed(s3, buckets["awkward"], FILLER, False)
    return buckets


# SeaweedFS's own pagination skips the folder `a/` when a page ends at the file `a`, and garbles
# a continuation token that ends in a character beyond the BMP (AWS does neither): small pages
# only on key sets without such pairs.
SMALL_PAGES = [(8, 7), (3, 2), (16, 1)]
LARGE_PAGES = [(8, 1000), (2, 1000), (16, 300), (1, 1000)]


@pytest.mark.parametrize(("name", "parallelism", "page_size"),
                         [(n, p, s) for n in ("awkward", "flat") for p, s in LARGE_PAGES]
                         + [(n, 8, 1000) for n in ("dated", "empty", "one", "page", "page+1")]
                         + [(n, p, s) for n in ("flat150", "dated", "empty", "one") for p, s in SMALL_PAGES])
def test_parallel_listing_equals_one_paginator(s3, seeded, name, parallelism, page_size):
    bucket = seeded[name]
    expected = reference(s3, bucket)
    listing = list_objects(s3, bucket, ROOT, parallelism=parallelism, page_size=page_size)
    assert table(listing) == expected
    assert listing["key"].is_unique


def test_awkward_keys_are_all_there(s3, seeded):
    # The reference itself holds the awkward keys (SeaweedFS folds '//' runs and may merge a
    # key with its folder): what the server stores is what both listings must give.
    keys = {k.removeprefix(ROOT) for k, *_ in reference(s3, seeded["awkward"])}
    assert {"a-b", "a/x/y", "f1", "f1/x", "f10", "\U0001f600", "\U0001f600/x", "x", "x/y", "empty/",
            "new\nline", "```/`x`"} <= keys


def proxied(s3_server):
    proxy = FaultProxy(urlsplit(s3_server.state.endpoint_url).port)
    creds = s3_server.server.credentials()
    client = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                          aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
                          config=Config(s3={"addressing_style": "path"}))
    return proxy, client


@pytest.mark.parametrize(("name", "objects"), [("empty", 0), ("one", 1), ("page", 1000)])
def test_no_split_below_one_page(s3_server, seeded, name, objects):
    # Up to one page of objects: exactly one request, as one paginator would send.
    proxy, client = proxied(s3_server)
    with proxy:
        listing = list_objects(client, seeded[name], ROOT, parallelism=8)
    assert len(listing) <= objects and len(proxy.requests) == 1


def test_flat_keys_are_split_by_key_range(s3_server, seeded):
    proxy, client = proxied(s3_server)
    with proxy:
        listing = list_objects(client, seeded["flat"], ROOT, parallelism=8, page_size=100)
    assert len(listing) == len(FLAT)
    starts = [path for _, path, _ in proxy.requests if "start-after=" in path]
    assert len(starts) >= 5  # ranges started at key boundaries, listed alongside the first


def test_dated_keys_are_split_at_sub_prefixes(s3_server, seeded):
    proxy, client = proxied(s3_server)
    with proxy:
        listing = list_objects(client, seeded["dated"], ROOT, parallelism=8, page_size=50)
    assert len(listing) == len(DATED)
    assert any("delimiter=%2F" in path for _, path, _ in proxy.requests)
    starts = [path for _, path, _ in proxy.requests if "start-after=" in path]
    assert any("2026%2F11%2F" in path for path in starts)  # a month found by delimiter discovery


def test_char_boundaries_follow_the_keys():
    sample = [f"p/raw/f{i:05d}.csv" for i in range(1, 1001)]
    bounds = char_boundaries(sample[-1], sample, "p/raw/")
    assert bounds[:9] == [f"p/raw/f{d}" for d in range(1, 10)]
    assert all(b > sample[-1] for b in bounds)
    assert char_boundaries("p/x", ["p/x"], "p/") == []
    # only characters of the kind that varies: no range at `fc`, `fs`, `fv` (from `.csv`), each an empty request
    assert bounds == [f"p/raw/f{d}" for d in range(1, 10)]
    assert char_boundaries("p/raw/ab", ["p/raw/aa", "p/raw/ab"], "p/raw/") == ["p/raw/b"]


def test_flat_keys_cost_no_probe_at_characters_the_keys_do_not_vary_in(s3_server, seeded):
    # 1,201 keys in pages of 100: 13 pages. Ranges start only at digits (f1: the keys vary in
    # digits), never at `fc`/`fs`/`fv` taken from `.csv`, each of which was an empty request.
    proxy, client = proxied(s3_server)
    with proxy:
        listing = list_objects(client, seeded["flat"], ROOT, parallelism=8, page_size=100)
    assert len(listing) == len(FLAT)
    starts = [path.split("start-after=")[1].split("&")[0] for _, path, _ in proxy.requests if "start-after=" in path]
    assert not [start for start in starts if start[-1] in "csv."], starts
