"""Cleanup never loses what it was not asked to delete, on the real server: overlapping prefixes
refused before any request, keys that DeleteObjects' XML cannot carry, whole-batch failures
reported as such, no leftovers, versioned buckets, and runs vs cleanup excluding each other."""

from __future__ import annotations

import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.config import Config
from dagster import AssetCheckKey, AssetKey, DagsterInstance, RunConfig
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecordStatus,
)
from pydantic import model_validator

from s3_assets.defs.maintenance.cleanup import cleanup_job
from s3_assets.defs.resources import S3Connection, S3Prefix
from s3_assets.lib.cleanup import (
    CleanupError,
    Target,
    _delete_batch,
    batchable,
    clean,
    failure_message,
)
from s3_assets.lib.prefix_lock import NOTES_ROOT, PrefixBusyError, PrefixLocks
from s3_assets.lib.text import printable
from s3_assets_tests.fault_proxy import FaultProxy
from s3_assets_tests.lease_faults import FailingRenewals, short_lease_prefix
from s3_assets_tests.test_cleanup import keys_in, op_metadata
from s3_assets_tests.test_cli_and_sensor import cli  # noqa: F401 - the fixture
from s3_assets_tests.test_listing import put_many

COPIES = {"train_csv": "raw/train.csv", "test_csv": "raw/test.csv", "gt_csv": "raw/gt.csv",
          "col_info_csv": "raw/metadata/col_info.csv"}


def run_cleanup(location: S3Prefix, instance: DagsterInstance | None = None, raise_on_error: bool = True, **config):
    return cleanup_job.execute_in_process(
        run_config=RunConfig({"delete_objects_under_prefix": {"config": config}}) if config else None,
        resources={"s3_prefix": location}, instance=instance or DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def error_text(error) -> str:
    """A serialized error with its causes: the step error wraps what the op raised."""
    return "" if error is None else error.message + "\n" + error_text(error.cause)


def failure_of(result) -> str:
    """The text of every step failure of a run."""
    return "\n".join(error_text(e.step_failure_data.error) for e in result.all_events
                     if e.event_type_value == "STEP_FAILURE")


def custom(endpoint: str, s3_server, **kwargs) -> S3Connection:
    creds = s3_server.server.credentials()
    return S3Connection(target="custom", endpoint_url=endpoint, region_name="us-east-1", max_attempts=2,
                        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key, **kwargs)


# -- 1. overlapping prefixes ------------------------------------------------------------------

class UncheckedPrefix(S3Prefix):
    """An S3Prefix without the load-time overlap check, as a resource built some other way."""

    @model_validator(mode="after")
    def _no_overlap(self) -> UncheckedPrefix:
        return self


@pytest.mark.parametrize(("prefix", "io_prefix"), [
    ("dagster-io", "dagster-io"),          # equal
    ("dagster-io/ins", "dagster-io"),      # data inside the IO prefix
    ("data", "data/io"),                   # IO prefix inside the data
    ("/dagster-io/", "dagster-io//"),      # equal once normalised
])
def test_overlapping_io_prefix_is_refused_before_any_request(s3, bucket, connection, prefix, io_prefix):
    io_objects = ["dagster-io/other_prefix/train/manifest.json", "dagster-io/ins/x.parquet",
                  "dagster-io/dagster-io/y.json", "data/io/data/z.json", "data/raw/train.csv"]
    put_many(s3, bucket, io_objects)
    with pytest.raises(ValueError, match="overlap"):  # refused when the resource is built (config)
        S3Prefix(s3=connection, bucket=bucket, prefix=prefix, io_prefix=io_prefix)
    # ... and again by the cleanup itself, before any request, for a resource that got past that.
    unchecked = UncheckedPrefix(s3=connection, bucket=bucket, prefix=prefix, io_prefix=io_prefix)
    result = run_cleanup(unchecked, raise_on_error=False, dry_run=False)
    assert not result.success
    message = failure_of(result)
    assert "S3_ASSETS_PREFIX" in message and "S3_ASSETS_IO_PREFIX" in message
    assert keys_in(s3, bucket) == set(io_objects)


# -- 2. keys the XML of DeleteObjects cannot carry ----------------------------------------------

# Every C0 control but NUL (SeaweedFS refuses to store it), DEL, C1 controls, the XML non-characters
# U+FFFE/U+FFFF, and CR / CRLF (which an XML parser reads as LF).
CONTROL_CHARS = [chr(c) for c in range(1, 32)] + ["\x7f", "\x85", "\x9f", "\ufffe", "\uffff", "\r\n", "\u2028"]


def test_batchable_is_exactly_what_xml_carries():
    assert batchable("ins_dataset/a b&<>\"'/\t\n\x7f\x85\u00e9\U0001F600.csv")
    for char in ["\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\r", "\ufffe", "\uffff", "\ud800"]:
        assert not batchable(f"ins_dataset/x{char}y"), repr(char)


def test_keys_with_control_characters_are_deleted_one_by_one_and_nothing_else(s3, bucket, make_location):
    odd = [f"ins_dataset/c{index:02d}-{char}-end" for index, char in enumerate(CONTROL_CHARS)]
    plain = [f"ins_dataset/plain/{i:04d}.csv" for i in range(30)]
    outside = [f"ins_dataset_old/c{index:02d}-{char}" for index, char in enumerate(CONTROL_CHARS[:8])]
    # '\r\n' read as '\n' by a parser would name this sibling: it must stay unless listed itself.
    put_many(s3, bucket, odd + plain + outside)
    assert keys_in(s3, bucket) == set(odd + plain + outside)  # the server stored every one as given
    result = run_cleanup(make_location(bucket), dry_run=False)
    assert keys_in(s3, bucket) == set(outside)
    meta = op_metadata(result)
    assert meta["objects"] == len(odd) + len(plain)
    shown = meta["keys"]
    assert "\x1b" not in shown and "\\x1b" in shown and "\\r\\n" in shown  # escaped, not raw


def test_a_batch_that_fails_as_a_whole_is_reported_as_the_batch(s3, bucket):
    # The real server's answer to a batch whose XML it cannot parse.
    keys = [f"ins_dataset/k{i}" for i in range(5)]
    put_many(s3, bucket, keys + ["ins_dataset/bad\x01key"])
    failed, batch, why = _delete_batch(s3, bucket, [Target(k) for k in [*keys, "ins_dataset/bad\x01key"]])
    assert failed == {} and len(batch) == 6
    assert "failed as a whole" in why and "MalformedXML" in why and "\x01" not in why


def test_whole_batch_errors_after_retries_blame_no_key(s3_server, s3, bucket):
    keys = [f"ins_dataset/many/{i:04d}" for i in range(1500)] + ["ins_dataset/odd\x02key"]
    put_many(s3, bucket, keys)

    def rule(method: str, path: str) -> str:  # every DeleteObjects answers 500, after botocore's retries too
        return "internal_error" if method == "POST" and "delete" in path else "pass"

    with FaultProxy(s3_server.state.ports.s3, rule=rule) as proxy:
        client = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket).connect()
        with pytest.raises(CleanupError) as raised:
            clean(client, bucket, ["ins_dataset/"], dry_run=False)
    report = raised.value.report
    assert len(report.batch_errors) == 2 and report.failed == {}  # two batches, no key blamed
    assert len(report.batch_failed) == 1500
    assert report.remaining == []  # the batches' keys are not blamed one by one either
    assert keys_in(s3, bucket) == set(keys[:1500])  # the odd key went on its own
    message = str(raised.value)
    assert "2 batch(es) failed as a whole (no key at fault)" in message and "InternalError" in message
    assert "1500 of 1501" in message and "ins_dataset/many/0007" not in message


def test_refusals_name_each_key_and_the_servers_words_escaped_once(s3_server, s3, bucket):
    # Keys and the server's reasons are outside text: shown escaped, and escaped once (a reason
    # escaped twice would show `\\\\` for one backslash and no longer match the server's words).
    batched, single = "ins_dataset/bidi\u202eevil", "ins_dataset/ctl\x01end"  # (SeaweedFS keeps no '\\' in keys)
    reason = "AccessDenied: denied\n\u202e back\\slash"
    put_many(s3, bucket, [batched, single])

    def refuse_in_batch(method: str, path: str, data: bytes) -> bytes:
        if method != "POST" or "delete" not in path:
            return data
        return ('<?xml version="1.0" encoding="UTF-8"?><DeleteResult><Error><Key>' + batched + "</Key>"
                "<Code>AccessDenied</Code><Message>denied&#10;\u202e back\\slash</Message></Error></DeleteResult>"
                ).encode()

    code = "AccessDenied\\\u202eMaybe"  # reaches the message through botocore and describe_client_error

    def refuse_alone(method: str, path: str, headers: dict[str, str]):
        return (403, code) if method == "DELETE" else None

    with FaultProxy(s3_server.state.ports.s3, rewrite=refuse_in_batch, answer=refuse_alone) as proxy:
        client = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket).connect()
        with pytest.raises(CleanupError) as raised:
            clean(client, bucket, ["ins_dataset/"], dry_run=False)
    message = str(raised.value)
    assert set(raised.value.report.failed) == {batched, single}
    assert printable(batched) in message and printable(single) in message
    for words in (reason, code):
        assert printable(words) in message and printable(printable(words)) not in message
    assert not {"\n", "\x01", "\u202e"} & set(message)


def test_a_listing_that_fails_after_the_deletes_loses_no_result(s3_server, s3, bucket, make_location, run_graph,
                                                                 uci_dir):
    # The deletes went through, then the prefix cannot be listed (to confirm them, and for the
    # sensor's fingerprint): the run fails saying so, and the checks still record what went.
    location, instance = make_location(bucket), DagsterInstance.ephemeral()
    run_graph(location, uci_dir, selection=["*s3_listing"], instance=instance)
    deleting = threading.Event()

    def rule(method: str, path: str) -> str:
        if method == "POST" and "delete" in path:
            deleting.set()
        query = parse_qs(urlsplit(path).query)
        listing_data = method == "GET" and "list-type" in query and query.get("prefix") == ["ins_dataset/"]
        return "internal_error" if deleting.is_set() and listing_data else "pass"

    with FaultProxy(s3_server.state.ports.s3, rule=rule) as proxy:
        through_proxy = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket, prefix=location.prefix)
        result = run_cleanup(through_proxy, instance=instance, raise_on_error=False, dry_run=False)
    assert not result.success and deleting.is_set()
    failure = failure_of(result)
    assert "listing the prefix afterwards to confirm them failed" in failure and "InternalError" in failure
    assert not {key for key in keys_in(s3, bucket) if key.startswith("ins_dataset/")}  # the deletes happened
    failed = AssetCheckExecutionRecordStatus.FAILED
    assert [latest_status(instance, asset, "object_exists") for asset in COPIES] == [failed] * len(COPIES)
    assert latest_status(instance, "s3_listing", "listing_is_current") == failed
    key = AssetCheckKey(AssetKey("s3_listing"), "listing_is_current")
    evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key].event.dagster_event
    assert "state_digest" not in evaluation.event_specific_data.metadata  # no fingerprint it could not take


def test_a_204_that_deleted_nothing_is_not_reported_as_deleted(s3, bucket):
    # A version id that does not exist: S3 answers 204 and deletes nothing. The listing after
    # the deletes is what the report believes.
    s3.put_object(Bucket=bucket, Key="ins_dataset/a", Body=b"1")
    from s3_assets.lib.cleanup import CleanupReport

    report = CleanupReport(bucket, ["ins_dataset/"], dry_run=False, targets=[Target("ins_dataset/a")],
                           remaining=["ins_dataset/a"])
    assert "1 still listed afterwards: ins_dataset/a" in failure_message(report)


# -- 3. leftovers ---------------------------------------------------------------------------

def test_cleanup_stores_no_output_and_removes_the_stored_outputs(s3, bucket, make_location, run_graph, uci_dir):
    location, instance = make_location(bucket), DagsterInstance.ephemeral()
    run_graph(location, uci_dir, selection="*train_csv", instance=instance)
    outputs_root = location.outputs_root()
    planted = f"{outputs_root}train/v00000000000000000001-0123abcd/data.parquet"  # as the IO manager names one
    s3.put_object(Bucket=bucket, Key=planted, Body=b"x")
    s3.put_object(Bucket=bucket, Key="dagster-io/other_prefix/train/data.parquet", Body=b"x")  # another prefix's
    before = keys_in(s3, bucket)
    stored = {k for k in before if k.startswith(outputs_root)}
    assert stored

    dry = run_cleanup(location, instance=instance)  # no config at all: a dry run
    assert keys_in(s3, bucket) == before
    meta = op_metadata(dry)
    assert meta["dry_run"] is True and meta["stored_output_objects"] == len(stored)
    assert planted in meta["stored_output_keys"]

    kept = run_cleanup(location, instance=instance, dry_run=False, keep_outputs=True)
    after_kept = keys_in(s3, bucket)
    assert stored <= after_kept and not any(k.startswith("ins_dataset/") for k in after_kept)

    real = run_cleanup(location, instance=instance, dry_run=False)
    left = keys_in(s3, bucket)
    assert not any(k.startswith(outputs_root) for k in left)  # outputs and the lock notes: all gone
    assert "dagster-io/other_prefix/train/data.parquet" in left
    for result in (dry, kept, real):  # the cleanup op stored nothing of its own anywhere
        assert not any(result.run_id in key for key in left)
        assert not [e for e in result.all_events if e.event_type_value == "HANDLED_OUTPUT"]


# -- 5. versioned buckets ------------------------------------------------------------------

def test_versioned_bucket_is_reported_and_old_versions_go_only_when_asked(s3, bucket, make_location):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    inside, outside = ["ins_dataset/raw/train.csv", "ins_dataset/raw/metadata/col_info.csv"], ["ins_dataset_old/a"]
    for body in (b"v1", b"v2"):
        for key in inside + outside:
            s3.put_object(Bucket=bucket, Key=key, Body=body)
    location = make_location(bucket)

    def versions(prefix: str) -> list[tuple[str, str]]:
        page = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
        return [(v["Key"], v["VersionId"]) for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]

    outside_versions = versions("ins_dataset_old/")
    result = run_cleanup(location, dry_run=False)
    meta = op_metadata(result)
    assert meta["bucket_versioning"] == "Enabled" and "delete markers" in meta["versioning"]
    assert keys_in(s3, bucket) == set(outside)
    assert len(versions("ins_dataset/")) == 6  # 2 versions + 1 marker each: still there, as said

    dry = run_cleanup(location, dry_run=True, delete_versions=True)
    assert op_metadata(dry)["versions_and_markers"] == 6 and len(versions("ins_dataset/")) == 6
    run_cleanup(location, dry_run=False, delete_versions=True)
    assert versions("ins_dataset/") == []
    assert versions("ins_dataset_old/") == outside_versions


# -- 4. runs and cleanup exclude each other ------------------------------------------------------

class Gate:
    """Holds the first request that matches until released: a step paused mid-run, no sleeps."""

    def __init__(self, matches):
        self.matches, self.reached, self.release = matches, threading.Event(), threading.Event()

    def __call__(self, method: str, path: str) -> None:
        if not self.reached.is_set() and self.matches(method, path):
            self.reached.set()
            assert self.release.wait(120), "the test never released the gate"


def in_thread(target):
    box: dict = {}

    def run():
        try:
            box["result"] = target()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def seed_copies(s3, bucket: str, body: bytes = b"old\n") -> None:
    for relative in COPIES.values():
        s3.put_object(Bucket=bucket, Key=f"ins_dataset/{relative}", Body=body)


def test_cleanup_refuses_while_a_run_of_another_instance_uses_the_prefix(s3_server, s3, bucket, make_location,
                                                                        run_graph, uci_dir):
    seed_copies(s3, bucket, b"same bytes are not written again\n")
    # The run pauses at its first look at raw/train.csv (a HEAD: it may skip the PUT).
    gate = Gate(lambda method, path: method == "HEAD" and path.endswith("/ins_dataset/raw/train.csv"))
    with FaultProxy(s3_server.state.ports.s3, on_request=gate) as proxy:
        run_location = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket)
        thread, box = in_thread(lambda: run_graph(run_location, uci_dir, selection="*train_csv"))
        assert gate.reached.wait(120)
        try:
            refused = run_cleanup(make_location(bucket), raise_on_error=False, dry_run=False)  # another instance
        finally:
            gate.release.set()
        thread.join(120)
    assert not refused.success
    message = failure_of(refused)
    run_id = box["result"].run_id
    assert run_id in message and "not known to this Dagster instance" in message and "Nothing was deleted" in message
    assert box["result"].success
    assert {f"ins_dataset/{r}" for r in COPIES.values()} <= keys_in(s3, bucket)


def test_a_run_refuses_while_a_cleanup_holds_the_prefix(s3_server, s3, bucket, make_location, run_graph, uci_dir):
    seed_copies(s3, bucket)
    gate = Gate(lambda method, path: method == "POST" and "delete" in path)  # the cleanup's first batch
    with FaultProxy(s3_server.state.ports.s3, on_request=gate) as proxy:
        cleanup_location = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket)
        thread, box = in_thread(lambda: run_cleanup(cleanup_location, dry_run=False))
        assert gate.reached.wait(120)
        try:
            run = run_graph(make_location(bucket), uci_dir, selection="*train_csv", raise_on_error=False)
        finally:
            gate.release.set()
        thread.join(120)
    cleanup = box["result"]
    assert cleanup.success and not run.success
    assert cleanup.run_id in failure_of(run) and "is being cleaned up" in failure_of(run)
    assert not any(k.startswith("ins_dataset/") for k in keys_in(s3, bucket))  # nothing written after all


def test_a_finished_run_of_the_same_instance_does_not_block_and_its_note_goes(s3, bucket, make_location, run_graph,
                                                                               uci_dir):
    location = make_location(bucket)
    instance = DagsterInstance.ephemeral()
    done = run_graph(location, uci_dir, selection="*train_csv", instance=instance)
    assert not any(k.startswith(NOTES_ROOT) for k in keys_in(s3, bucket))  # the run took its note back
    # A process of that run that died before it could: its note is still there, unexpired.
    PrefixLocks(location.connect(), bucket).hold_for_run(done.run_id, location.written_roots(), what="t").stop()
    refused = run_cleanup(location, raise_on_error=False, dry_run=False)  # another instance: must wait
    assert not refused.success and done.run_id in failure_of(refused)
    run_cleanup(location, instance=instance, dry_run=False)  # this instance knows the run is finished
    assert not any(k.startswith((NOTES_ROOT, "ins_dataset/")) for k in keys_in(s3, bucket))


def test_an_expired_note_does_not_block_and_two_cleanups_exclude_each_other(s3, bucket, make_location):
    location = make_location(bucket)
    seed_copies(s3, bucket)
    client = location.connect()
    crashed = PrefixLocks(client, bucket, ttl_seconds=0)
    crashed.hold_for_run("crashed-run", location.written_roots(), what="test").stop()  # died: expires at once
    holder = PrefixLocks(client, bucket)
    with holder.cleanup("other-cleanup-run", location.written_roots(), what="test"):
        refused = run_cleanup(location, raise_on_error=False, dry_run=False)
        assert not refused.success and "other-cleanup-run" in failure_of(refused)
        with pytest.raises(PrefixBusyError, match="other-cleanup-run"):
            holder.hold_for_run("late-run", location.written_roots(), what="test")
    run_cleanup(location, dry_run=False)
    assert keys_in(s3, bucket) == set()


# When the cleanup starts: with the run (it usually wins: the run computes before its first
# request), at the run's first request, or at the PUT of the run's note (both contend for the notes).
STARTS = ["together", "first request", "note put"]


@pytest.mark.parametrize("attempt", range(12))
def test_run_and_cleanup_started_together_never_both_succeed_with_data_lost(s3_server, s3, make_location, run_graph,
                                                                            uci_dir, attempt):
    bucket = f"race-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    seed_copies(s3, bucket, b"stale\n" if attempt % 2 else b"")
    stage = STARTS[attempt % 3]
    go = threading.Event()
    if stage == "together":
        go.set()

    arrived: list[tuple[str, str, str]] = []  # (whose, method, path) in the order the two proxies got them
    order = threading.Lock()

    def observe(method: str, path: str) -> None:
        with order:
            arrived.append(("run", method, path))
        if stage == "first request" or (method == "PUT" and f"/{NOTES_ROOT}run." in path):
            go.set()

    def observe_cleanup(method: str, path: str) -> None:
        with order:
            arrived.append(("cleanup", method, path))

    with (FaultProxy(s3_server.state.ports.s3, on_request=observe) as proxy,
          FaultProxy(s3_server.state.ports.s3, on_request=observe_cleanup) as cleanup_proxy):
        run_location = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket)
        start = threading.Barrier(2)

        def graph():
            start.wait()
            return run_graph(run_location, uci_dir, selection="*train_csv", raise_on_error=False,
                             instance=DagsterInstance.ephemeral())

        def cleanup():
            start.wait()
            go.wait(120)
            cleanup_location = S3Prefix(s3=custom(cleanup_proxy.url, s3_server), bucket=bucket)
            return run_cleanup(cleanup_location, raise_on_error=False, dry_run=False)  # another instance

        (run_thread, run_box), (cleanup_thread, cleanup_box) = in_thread(graph), in_thread(cleanup)
        run_thread.join(180)
        cleanup_thread.join(180)
    run, cleaned = run_box["result"], cleanup_box["result"]
    if run.success and "ins_dataset/raw/train.csv" not in keys_in(s3, bucket):
        # What the run wrote is gone: only a cleanup that came after the run may have deleted it
        # (started together, either may go first under load): the run's note was released before
        # the cleanup's first delete arrived.
        released = max(i for i, (whose, method, path) in enumerate(arrived)
                       if whose == "run" and method == "DELETE" and f"/{NOTES_ROOT}run." in path)
        deletes = [i for i, (whose, method, path) in enumerate(arrived) if whose == "cleanup" and (
                   (method == "POST" and "delete" in path) or (method == "DELETE" and NOTES_ROOT not in path))]
        assert cleaned.success and deletes and released < min(deletes), arrived
    if not cleaned.success:  # a refused cleanup names the run that holds the prefix
        assert run.run_id in failure_of(cleaned)
    if not run.success:  # a refused run names the cleanup
        assert cleaned.run_id in failure_of(run)
    # Both refusing is possible (each saw the other's note) and loses nothing.


def test_a_cleanup_whose_lease_lapsed_stops_before_the_next_batch_and_says_what_it_deleted(s3_server, s3, bucket):
    ttl = 9
    keys = [f"ins_dataset/raw/f{i:05d}.csv" for i in range(1100)]  # two listed pages: two batches
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda key: s3.put_object(Bucket=bucket, Key=key, Body=b"x"), keys))
    s3.put_object(Bucket=bucket, Key="ins_dataset_old/keep.csv", Body=b"x")
    renewals = FailingRenewals(ttl, kind="cleanup")
    first_batch = threading.Event()

    def on_request(method: str, path: str) -> None:
        if method == "POST" and "delete" in path:  # the first batch is on its way: renewals fail from now on
            first_batch.set()
            renewals.refuse.set()
        if method == "GET" and "continuation-token=" in path:  # the second page waits for the lapse
            assert first_batch.wait(120) and renewals.lapsed.wait(120)

    with FaultProxy(s3_server.state.ports.s3, rule=renewals, on_request=on_request) as proxy:
        location = short_lease_prefix(ttl)(s3=custom(proxy.url, s3_server), bucket=bucket)
        result = run_cleanup(location, raise_on_error=False, dry_run=False)
        deletes = [path for method, path, _ in proxy.requests if method == "POST" and "delete" in path]
    assert not result.success and len(deletes) == 1  # the second batch was never sent
    message = failure_of(result)
    assert "CleanupError" in message and "stopped before it was done: 1000 object(s) deleted" in message
    assert "the listing stopped too: objects not yet listed were not deleted either" in message
    assert f"cleanup run {result.run_id}" in message and f"{NOTES_ROOT}cleanup." in message
    assert re.search(r"last renewed successfully \d+\.\d s ago", message) and "nothing more is deleted" in message
    assert keys_in(s3, bucket) == set(keys[1000:]) | {"ins_dataset_old/keep.csv"}  # no note left either


def test_a_delete_queued_before_the_lease_lapsed_is_not_sent_after(s3_server, s3, bucket):
    """One worker: the batch of plain keys is held at the proxy until the lease lapsed; the keys
    that go one by one (control characters) were queued while it was live, and are not sent."""
    ttl = 6
    plain = [f"ins_dataset/plain/{i:03d}.csv" for i in range(20)]
    odd = [f"ins_dataset/odd/{i}-\x01-{i}" for i in range(3)]
    put_many(s3, bucket, plain + odd + ["ins_dataset_old/keep.csv"])
    renewals = FailingRenewals(ttl, kind="cleanup")

    def on_request(method: str, path: str) -> None:
        if method == "POST" and "delete" in path:  # the batch is sent while the lease is live; then it lapses
            renewals.refuse.set()
            assert renewals.lapsed.wait(120)

    with FaultProxy(s3_server.state.ports.s3, rule=renewals, on_request=on_request) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.url, region_name="us-east-1",
                              aws_access_key_id=s3_server.server.credentials().access_key_id,
                              aws_secret_access_key=s3_server.server.credentials().secret_access_key,
                              config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
        with PrefixLocks(client, bucket, ttl_seconds=ttl).cleanup("lapsing-cleanup", ["ins_dataset/"],
                                                                   what="t") as hold:
            with pytest.raises(CleanupError) as raised:
                clean(client, bucket, ["ins_dataset/"], dry_run=False, workers=1, check=hold.check_before)
        single = [path for method, path, _ in proxy.requests if method == "DELETE" and "/ins_dataset/odd/" in path]
    report, text = raised.value.report, str(raised.value)
    assert not single and sorted(report.not_sent) == sorted(odd)
    assert "stopped before it was done: 20 object(s) deleted, 3 of the 23 listed object(s) not deleted" in text
    assert "cleanup run lapsing-cleanup" in text and "3 listed object(s) were not sent for deletion" in text
    assert printable(odd[0]) in text and "\x01" not in text  # escaped
    assert keys_in(s3, bucket) == set(odd) | {"ins_dataset_old/keep.csv"}


# -- C. checks show what a cleanup removed -------------------------------------------------------

def latest_status(instance: DagsterInstance, asset: str, check: str):
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [AssetCheckKey(AssetKey(asset), check)]).get(AssetCheckKey(AssetKey(asset), check))
    return record.status if record else None


def latest_evaluation(instance: DagsterInstance, asset: str, check: str):
    key = AssetCheckKey(AssetKey(asset), check)
    return instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key].event.dagster_event \
        .event_specific_data


def test_cleanup_turns_checks_red_until_the_next_materialization(s3, bucket, make_location, run_graph, uci_dir):
    """Everything whose S3 object or stored value a cleanup removed shows failed ERROR checks
    (asset health "Degraded" in the catalog and lineage) until it is materialized again; and
    what is missing counts, not only what this run deleted (a re-run after a killed cleanup)."""
    from s3_assets.defs.maintenance.checks import STORED_VALUE_ASSETS

    location = make_location(bucket)
    instance = DagsterInstance.ephemeral()
    run_graph(location, uci_dir, instance=instance)  # the whole graph
    passed, failed = AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED
    checks = ([(asset, name) for asset in COPIES for name in ("object_exists", "matches_raw_table")]
              + [("s3_listing", "listing_is_current")]
              + [(key.to_user_string(), "stored_value_exists") for key in STORED_VALUE_ASSETS])
    assert {"file_map", "dataframes", "modelling_table", "data_dictionary", "train"} <= {a for a, _ in checks}
    assert {check: latest_status(instance, *check) for check in checks} == dict.fromkeys(checks, passed)

    run_cleanup(location, instance=instance, dry_run=False)
    assert {check: latest_status(instance, *check) for check in checks} == dict.fromkeys(checks, failed)
    assert {latest_evaluation(instance, *check).severity.value for check in checks} == {"ERROR"}
    assert "state_digest" in latest_evaluation(instance, "s3_listing", "listing_is_current").metadata

    run_graph(location, uci_dir, instance=instance)
    assert {check: latest_status(instance, *check) for check in checks} == dict.fromkeys(checks, passed)

    # A cleanup killed after its deletes, re-run (its note expired): this run deletes no data
    # object, yet every copy is gone and shows so.
    for relative in COPIES.values():
        s3.delete_object(Bucket=bucket, Key=f"ins_dataset/{relative}")
    rerun = run_cleanup(location, instance=instance, dry_run=False)
    assert op_metadata(rerun)["objects"] == 0
    assert {check: latest_status(instance, *check) for check in checks} == dict.fromkeys(checks, failed)


def test_stored_value_checks_cover_every_stored_output(s3, bucket, make_location, run_graph, uci_dir):
    """`stored_value_exists` is on exactly the assets whose value the IO manager stores, at the
    folder where it stores it (the `stored_output` metadata of a whole-graph run)."""
    from s3_assets.defs.maintenance.checks import STORED_VALUE_ASSETS, stored_value_folder

    location = make_location(bucket)
    result = run_graph(location, uci_dir)
    stored = {}
    for event in result.get_asset_materialization_events():
        value = event.materialization.metadata.get("stored_output")
        if value is not None:
            stored[event.asset_key] = str(value.value)
    assert set(stored) == set(STORED_VALUE_ASSETS)
    for key, uri in stored.items():
        folder = f"s3://{bucket}/{stored_value_folder(location, key)}"  # the version's manifest lies in it
        assert uri.startswith(folder) and uri.endswith("/manifest.json") and "/" not in uri[len(folder):-14], uri


# -- B. a cleanup without config deletes nothing --------------------------------------------------

def test_cli_cleanup_without_config_is_a_dry_run(cli, s3, bucket):  # noqa: F811 - the imported fixture
    keys = ["ins_dataset/raw/train.csv", "ins_dataset/notes.txt"]
    put_many(s3, bucket, keys)
    done = cli("job", "execute", "-m", "s3_assets.definitions", "-j", "cleanup_job")
    assert "would delete 2 object(s)" in done.stderr
    assert set(keys) <= keys_in(s3, bucket)
    cli("job", "execute", "-m", "s3_assets.definitions", "-j", "cleanup_job", "-c", "config/cleanup.yaml")
    assert not any(k.startswith("ins_dataset/") for k in keys_in(s3, bucket))
