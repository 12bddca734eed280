"""A cleanup of a parent prefix never deletes a nested configuration's data (issue 19 §2):
configuration A has `S3_ASSETS_PREFIX=grp/e5`; a cleanup of `grp` would delete A's copies
(`grp/e5/raw/*.csv`), report success and leave A's stored outputs and catalog pointing at
nothing. The cleanup recognises A's copies by their layout below its own prefix (any depth,
spelled as the server stores them) and refuses, dry run too, naming A's prefix and how to clean
it; keys of A that list before its copies (other pages) are held back until the listing has
left A's folder, in S3's byte order as in SeaweedFS' folder-by-folder order, or a probe of its
`raw/` has found no copy."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from dagster import DagsterInstance
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.source import UCI_TABLES
from s3_assets.lib.text import printable
from s3_assets_tests.fault_proxy import FaultProxy
from s3_assets_tests.test_cleanup import keys_in
from s3_assets_tests.test_cleanup_safety import COPIES, custom, failure_of, latest_status, run_cleanup
from s3_assets_tests.test_listing import put_many

RELATIVES = [table.s3_relative for table in UCI_TABLES]  # raw/train.csv, ..., raw/metadata/col_info.csv


def refused(location, *, dry_run: bool) -> str:
    result = run_cleanup(location, raise_on_error=False, dry_run=dry_run)
    assert not result.success
    return failure_of(result)


@pytest.mark.parametrize(("nested", "relative"), list(zip(["grp/e5", "grp/a/e5", "grp/raw", "grp/a/b/c/e5"],
                                                          RELATIVES, strict=True)))
def test_a_parent_cleanup_refuses_a_nested_configurations_copies(s3, bucket, make_location, nested, relative):
    """Depth 1, 2 and 4, and a nested prefix named `raw` (its copies are `grp/raw/raw/...`,
    the parent's own are `grp/raw/...`), each with another of the four copies (one is enough
    to tell): dry run and real run refuse, nothing is deleted, the message names the nested
    prefix and its own cleanup."""
    own = ["grp/raw/train.csv", "grp/raw/metadata/col_info.csv", "grp/notes.txt", "grp/zzz/later.csv"]
    theirs = [f"{nested}/{relative}", f"{nested}/aaa.txt"]
    put_many(s3, bucket, own + theirs)
    before = keys_in(s3, bucket)
    for dry_run in (True, False):
        message = refused(make_location(bucket, prefix="grp"), dry_run=dry_run)
        assert "refusing to clean up" in message and "Nothing was deleted" in message
        assert f"its S3_ASSETS_PREFIX {nested} lies inside" in message and f"S3_ASSETS_PREFIX={nested}" in message
        assert "an S3 copy of another configuration's data" in message
        assert keys_in(s3, bucket) == before
    if nested == "grp/raw":  # without it the same cleanup deletes its own, `raw/` and sub-folders included
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key} for key in theirs]})
        assert run_cleanup(make_location(bucket, prefix="grp"), dry_run=False).success
        assert keys_in(s3, bucket) == set()


@pytest.mark.parametrize(("written", "named"), [
    ("grp\\e5\\raw\\train.csv", "grp/e5"),              # `\` is stored as `/`
    ("grp//e5/raw/gt.csv", "grp/e5"),                   # empty segments collapse
    ("grp/e5//raw//test.csv", "grp/e5"),
    ("grp/E5/raw/train.csv", "grp/E5"),                 # the folder in any case (the copy's names are the project's)
    ("grp/e\x1b[31m5\u202e/raw/train.csv", "grp/e\x1b[31m5\u202e"),  # shown escaped
])
def test_odd_spellings_of_a_nested_configuration_are_refused_and_named_escaped(
        s3, bucket, make_location, written, named):
    put_many(s3, bucket, [written, "grp/notes.txt"])
    before = keys_in(s3, bucket)
    stored = (before - {"grp/notes.txt"}).pop()
    assert "\\" not in stored and "//" not in stored  # the server stores it as the test expects
    for dry_run in (True, False):
        message = refused(make_location(bucket, prefix="grp"), dry_run=dry_run)
        assert f"its S3_ASSETS_PREFIX {printable(named)} lies inside" in message
        assert "\x1b" not in message and "\u202e" not in message
        assert keys_in(s3, bucket) == before


def listed_pages(proxy: FaultProxy) -> list[tuple[str, bool]]:
    """The page-sized LIST requests the proxy saw under `grp/`: (prefix, a later page of it)."""
    with proxy.lock:
        queries = [parse_qs(urlsplit(path).query) for method, path, _ in proxy.requests
                   if method == "GET" and "list-type=2" in path]
    return [(query["prefix"][0], "continuation-token" in query or "start-after" in query) for query in queries
            if query.get("prefix", [""])[0].startswith("grp/") and query.get("max-keys") == ["1000"]]


def test_a_nested_configuration_spread_over_pages_keeps_every_key(s3_server, s3, bucket):
    """Pages of 1,000 keys: A's keys before its copies fill the first page, its copies are on
    the second. The first page's keys that cannot be A's (directly under `grp/`, or in a folder
    the listing has left) go; A's wait (fewer than a batch: no probe), and the second page's
    copy refuses before any of it is sent; A's keys stay."""
    own_direct = [f"grp/0own{i}.txt" for i in range(3)]
    own_folder = [f"grp/d/x{i}.csv" for i in range(4)]
    theirs = [f"grp/e5/a{i:04d}.csv" for i in range(1100)] + [f"grp/e5/{relative}" for relative in RELATIVES]
    after = ["grp/zz/x.csv"]
    put_many(s3, bucket, own_direct + own_folder + theirs + after)
    with FaultProxy(s3_server.state.ports.s3) as proxy:
        location = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket, prefix="grp")
        message = refused(location, dry_run=True)
        assert "Nothing was deleted" in message and keys_in(s3, bucket) == set(own_direct + own_folder + theirs + after)
        with proxy.lock:
            proxy.requests.clear()
        message = refused(location, dry_run=False)
        pages = listed_pages(proxy)
    assert keys_in(s3, bucket) == set(theirs + after)
    assert "7 object(s) listed before it was found were deleted" in message
    assert "its S3_ASSETS_PREFIX grp/e5 lies inside" in message
    # Two pages, no probe, then the listing of what is left (the catalog's state).
    assert pages[:3] == [("grp/", False), ("grp/", True), ("grp/", False)], pages


def test_a_folder_is_left_when_the_server_lists_folder_by_folder(s3_server, s3, bucket):
    """SeaweedFS lists `grp/e5/…` before `grp/e5-b/…` (folder by folder; S3's byte order has
    `-` before `/`). A's (`grp/e5-b`) first key ends the first page, after 999 of the parent's
    own keys in `grp/e5/`; its copy starts the second. The listing has left `grp/e5/` (its keys
    go), not `grp/e5-b/` (its key waits): the copy refuses and every key of A stays."""
    own = [f"grp/e5/k{i:03d}.csv" for i in range(999)]
    theirs = ["grp/e5-b/a.csv", "grp/e5-b/raw/train.csv"]
    put_many(s3, bucket, own + theirs)
    first = s3.list_objects_v2(Bucket=bucket, Prefix="grp/", MaxKeys=1000)
    assert first["Contents"][-1]["Key"] == "grp/e5-b/a.csv"  # the order this test is about
    location = S3Prefix(s3=custom(s3_server.state.endpoint_url, s3_server), bucket=bucket, prefix="grp")
    message = refused(location, dry_run=False)
    assert "its S3_ASSETS_PREFIX grp/e5-b lies inside" in message
    assert keys_in(s3, bucket) == set(theirs)


def test_a_big_folder_is_probed_once_and_a_copy_found_there_refuses_before_its_page_is_sent(s3_server, s3, bucket):
    """A batch's worth of keys waiting on one folder: the cleanup lists the folder's `raw/`
    once (the only extra request) instead of holding them to the end. Free (`grp/big/`), its keys
    go at once, the later pages' too; holding a copy (`grp/nest/`: the 4th page leaves 1,900 of its
    keys waiting), nothing of that page is sent."""
    big = [f"grp/big/a{i:04d}.csv" for i in range(2100)]
    nested = [f"grp/nest/a{i:04d}.csv" for i in range(2000)] + ["grp/nest/raw/gt.csv"]
    put_many(s3, bucket, big + nested)
    with FaultProxy(s3_server.state.ports.s3) as proxy:
        location = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket, prefix="grp")
        message = refused(location, dry_run=False)
        pages = listed_pages(proxy)
    assert "its S3_ASSETS_PREFIX grp/nest lies inside" in message
    assert "2100 object(s) listed before it was found were deleted" in message
    assert keys_in(s3, bucket) == set(nested)
    probes = [prefix for prefix, _ in pages if prefix != "grp/"]
    assert probes == ["grp/big/raw/", "grp/nest/raw/"]


def test_a_real_nested_configuration_survives_the_parents_cleanup(s3, bucket, make_location, run_graph, uci_dir):
    """The issue's case with real runs: A (`grp/e5`) materialized; a real cleanup of `grp`
    is refused and A's copies, stored outputs and passed checks stay; A's own cleanup, then
    `grp`'s, succeed."""
    instance = DagsterInstance.ephemeral()
    nested = make_location(bucket, prefix="grp/e5")
    run_graph(nested, uci_dir, instance=instance)
    put_many(s3, bucket, ["grp/mine.txt"])
    before = keys_in(s3, bucket)
    assert {f"grp/e5/{relative}" for relative in COPIES.values()} <= before
    parent = make_location(bucket, prefix="grp")
    result = run_cleanup(parent, instance=instance, raise_on_error=False, dry_run=False)
    assert not result.success and "S3_ASSETS_PREFIX=grp/e5" in failure_of(result)
    assert keys_in(s3, bucket) == before
    passed = AssetCheckExecutionRecordStatus.SUCCEEDED
    assert {latest_status(instance, asset, "object_exists") for asset in COPIES} == {passed}

    assert run_cleanup(nested, instance=instance, dry_run=False).success
    assert run_cleanup(parent, instance=instance, dry_run=False).success
    assert not any(key.startswith("grp/") for key in keys_in(s3, bucket))


@pytest.mark.parametrize("note", ["grp/io/e1/.locks/writers/run1/host-1-ab.json", "grp/io/e1/.locks/cleanup.json"])
def test_another_configurations_lock_notes_are_refused(s3, bucket, make_location, note):
    """An older release kept its notes under `<io_prefix>/<prefix>/.locks/`: another
    configuration whose IO prefix lies in this data prefix."""
    put_many(s3, bucket, [note, "grp/notes.txt"])
    before = keys_in(s3, bucket)
    for dry_run in (True, False):
        assert "a lock note" in refused(make_location(bucket, prefix="grp"), dry_run=dry_run)
        assert keys_in(s3, bucket) == before


@pytest.mark.parametrize(("nested", "relative"), [("myio/p1", RELATIVES[0]), ("myio/p1/x", RELATIVES[3])])
def test_another_configurations_copies_inside_its_stored_outputs_are_refused(s3, bucket, make_location, nested, relative):
    """A (`S3_ASSETS_PREFIX=p1`, `S3_ASSETS_IO_PREFIX=myio`) keeps its stored outputs in
    `myio/p1/`; B's prefix is that folder (or lies in it), so B's copies are there too (outside
    attack on issue 19 §2: A's cleanup deleted them as "stored output objects" and succeeded).
    Refused, dry run too, before anything of the outputs folder is sent, naming B's prefix."""
    # B's other key lists after its copy: a key not of A's outputs layout listed first is refused
    # by that (test_cleanup_outputs_layout.py); here the copy decides, naming B's prefix.
    theirs = [f"{nested}/{relative}", f"{nested}/zz-notes.txt"]
    own = ["p1/raw/train.csv", "myio/p1/train/manifest.json"]
    put_many(s3, bucket, own + theirs)
    location = make_location(bucket, prefix="p1", io_prefix="myio")
    for dry_run in (True, False):
        message = refused(location, dry_run=dry_run)
        assert f"its S3_ASSETS_PREFIX {nested} lies in them" in message and f"S3_ASSETS_PREFIX={nested}" in message
    left = keys_in(s3, bucket)
    assert set(theirs) | {"myio/p1/train/manifest.json"} <= left  # nothing of the outputs folder was sent
