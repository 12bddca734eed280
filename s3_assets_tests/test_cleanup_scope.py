"""A cleanup records the state (failed checks, values gone) only of assets whose latest
materialization lies under what it cleaned (issue 19, attack item 7): cleaning a never-used
prefix must not turn another prefix's assets red; cleaning their own still does."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from s3_assets.defs.maintenance.checks import STORED_VALUE_ASSETS
from s3_assets_tests.test_cleanup import check_evaluations, keys_in, op_metadata
from s3_assets_tests.test_cleanup_safety import COPIES, latest_status, run_cleanup

CHECKS = ([(asset, name) for asset in COPIES for name in ("object_exists", "matches_raw_table")]
          + [("s3_listing", "listing_is_current")]
          + [(key.to_user_string(), "stored_value_exists") for key in STORED_VALUE_ASSETS])


def statuses(instance: DagsterInstance) -> dict:
    return {check: latest_status(instance, *check) for check in CHECKS}


@pytest.mark.parametrize("other", ["zzz", "e1x", "e1/raw/metadata/x", "other bucket"])
def test_cleaning_another_prefix_leaves_this_prefixs_checks_and_cleaning_its_own_marks_them(
        s3, bucket, make_location, run_graph, uci_dir, other):
    passed, failed = AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED
    instance = DagsterInstance.ephemeral()
    location = make_location(bucket, prefix="e1")
    run_graph(location, uci_dir, instance=instance)  # the whole graph under e1/
    assert statuses(instance) == dict.fromkeys(CHECKS, passed)
    before = keys_in(s3, bucket)

    if other == "other bucket":
        elsewhere = bucket + "-b"
        s3.create_bucket(Bucket=elsewhere)
        cleaned = make_location(elsewhere, prefix="e1")
    else:
        cleaned = make_location(bucket, prefix=other)
    result = run_cleanup(cleaned, instance=instance, dry_run=False)  # the same instance, as in the UI
    assert op_metadata(result)["objects"] == 0 and keys_in(s3, bucket) == before
    assert not check_evaluations(result)  # nothing of e1's is under what it cleaned
    assert statuses(instance) == dict.fromkeys(CHECKS, passed)

    result = run_cleanup(location, instance=instance, dry_run=False)
    assert statuses(instance) == dict.fromkeys(CHECKS, failed)
    uris = {str(evaluation.metadata["dagster/uri"].value) for (asset, name), evaluation
            in check_evaluations(result).items() if name == "object_exists"}
    assert uris == {f"s3://{bucket}/e1/{relative}" for relative in COPIES.values()}


def test_cleaning_a_folder_inside_the_prefix_marks_the_copies_it_held(s3, bucket, make_location, run_graph, uci_dir):
    """A cleanup of `e1/raw` deletes e1's copies: they are recorded as gone under their own
    URIs (not `e1/raw/raw/…`), and the listing of e1, which no longer describes e1, too."""
    failed, passed = AssetCheckExecutionRecordStatus.FAILED, AssetCheckExecutionRecordStatus.SUCCEEDED
    instance = DagsterInstance.ephemeral()
    location = make_location(bucket, prefix="e1")
    run_graph(location, uci_dir, instance=instance)
    result = run_cleanup(make_location(bucket, prefix="e1/raw"), instance=instance, dry_run=False)
    after = statuses(instance)
    of_data = [check for check in CHECKS if check[1] != "stored_value_exists"]
    assert {check: after[check] for check in of_data} == dict.fromkeys(of_data, failed)
    assert {after[check] for check in CHECKS if check[1] == "stored_value_exists"} == {passed}  # e1's outputs stay
    listing = check_evaluations(result)[("s3_listing", "listing_is_current")]
    assert "state_digest" not in listing.metadata  # what is left under e1/raw/ is not e1's listing's state
