"""The notes folder as others may leave it, and what a refusal says of its holder (issue 19,
attack items 10 and 12): folder markers (zero-byte keys ending in `/`, what an S3 console's
"Create folder" makes) are no notes; a refusal names its holder as what it is."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.prefix_lock import LOCKS_FOLDER, NOTES_ROOT, PrefixBusyError, PrefixLocks
from s3_assets_tests.fault_proxy import FaultProxy
from s3_assets_tests.test_cleanup import keys_in
from s3_assets_tests.test_cleanup_safety import Gate, custom, failure_of, in_thread, run_cleanup, seed_copies

MARKERS = (LOCKS_FOLDER, NOTES_ROOT, NOTES_ROOT + "made by hand/", NOTES_ROOT + "run.120.x/")


def test_folder_markers_in_the_notes_folder_are_no_notes(s3, bucket, make_location, run_graph, uci_dir):
    for marker in MARKERS:
        s3.put_object(Bucket=bucket, Key=marker, Body=b"")
    location = make_location(bucket)
    run = run_graph(location, uci_dir, selection="*train_csv", raise_on_error=False)
    assert run.success, failure_of(run)
    cleanup = run_cleanup(make_location(bucket, prefix="other"), raise_on_error=False, dry_run=False)
    assert cleanup.success, failure_of(cleanup)
    locks = PrefixLocks(location.connect(), bucket)
    locks.hold_for_run("a-run", location.written_roots(), what="t").release()
    with locks.cleanup("a-cleanup", ["elsewhere/"], what="t"):
        pass
    # Left as they were: neither read as notes nor swept.
    assert {key for key in keys_in(s3, bucket) if key.startswith(LOCKS_FOLDER)} == set(MARKERS)


def test_a_run_refused_by_a_cleanup_of_its_own_instance_says_so(s3_server, s3, bucket, make_location, run_graph,
                                                               uci_dir):
    seed_copies(s3, bucket)
    instance = DagsterInstance.ephemeral()
    gate = Gate(lambda method, path: method == "POST" and "delete" in path)  # the cleanup's first batch
    with FaultProxy(s3_server.state.ports.s3, on_request=gate) as proxy:
        cleanup_location = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket)
        thread, box = in_thread(lambda: run_cleanup(cleanup_location, instance=instance, dry_run=False))
        assert gate.reached.wait(120)
        try:
            run = run_graph(make_location(bucket), uci_dir, selection="*train_csv", instance=instance,
                            raise_on_error=False)
        finally:
            gate.release.set()
        thread.join(120)
    cleanup = box["result"]
    assert cleanup.success and not run.success
    message = failure_of(run)
    assert f"is being cleaned up by cleanup run {cleanup.run_id} (host " in message
    assert "a cleanup running in this Dagster instance: wait for it to end" in message
    assert "not known to this Dagster instance" not in message and "run run" not in message
    assert "its note is live until" in message


@pytest.mark.parametrize("asked", [True, False])
def test_a_cleanup_refused_by_a_run_names_it_as_a_run(s3, bucket, make_location, asked):
    location = make_location(bucket)
    locks = PrefixLocks(location.connect(), bucket)
    hold = locks.hold_for_run("holding-run", location.written_roots(), what="t")
    try:
        with pytest.raises(PrefixBusyError) as refused:
            with locks.cleanup("a-cleanup", location.written_roots(), what="t",
                               is_finished=(lambda run_id: None) if asked else None):
                pass
    finally:
        hold.release()
    message = str(refused.value)
    assert "in use by 1 holder(s) (1 run(s), 0 other cleanup(s)): run holding-run (host " in message
    assert "run run" not in message and "cleanup run holding-run" not in message
    assert ("not known to this Dagster instance" in message) is asked
    assert ("no Dagster instance was asked about it here" in message) is not asked
