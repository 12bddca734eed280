"""One configuration's cleanup never deletes another configuration's stored outputs, whatever
IO prefix it is given (attack 1540 item 4: `S3_ASSETS_PREFIX=dagster-io S3_ASSETS_IO_PREFIX=io2`
deleted every prefix's stored outputs). Statically: a data prefix overlapping the default IO
prefix is refused when the resource is built (and again by the op). Dynamically: the cleanup
recognises stored values by their names in its own listing (version folders
`v<ns>-<8hex>[-<run>]/`) outside its own outputs and refuses, before the page holding one is
queued; a `manifest.json` (a value's pointer, listed before its version folders) is held back
until the whole listing passed."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import DagsterInstance

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib import stored_values
from s3_assets_tests.test_cleanup import keys_in
from s3_assets_tests.test_cleanup_safety import UncheckedPrefix, failure_of, run_cleanup
from s3_assets_tests.test_listing import put_many


@pytest.mark.parametrize("prefix", ["dagster-io", "Dagster-IO", "dagster-io/e1", "/dagster-io/"])
def test_a_data_prefix_overlapping_the_default_io_prefix_is_refused(s3, bucket, connection, prefix):
    others = ["dagster-io/e1/train/manifest.json", "dagster-io/e1/raw.csv", "dagster-io/ins_dataset/x.json"]
    put_many(s3, bucket, others)
    with pytest.raises(ValueError, match="is, contains or lies in 'dagster-io', the default IO prefix"):
        S3Prefix(s3=connection, bucket=bucket, prefix=prefix, io_prefix="io2")
    # ... and by the op, for a resource built some other way; dry run or not.
    unchecked = UncheckedPrefix(s3=connection, bucket=bucket, prefix=prefix, io_prefix="io2")
    for dry_run in (True, False):
        result = run_cleanup(unchecked, raise_on_error=False, dry_run=dry_run)
        assert not result.success
        assert "S3_ASSETS_PREFIX" in failure_of(result) and "default S3_ASSETS_IO_PREFIX" in failure_of(result)
    assert keys_in(s3, bucket) == set(others)


def _store(s3, bucket: str, location: S3Prefix, asset: str) -> None:
    stored_values.write_value(s3, bucket, location.stored_value_folder([asset]), pd.DataFrame({"a": [1, 2]}))


def test_a_cleanup_refuses_another_configurations_stored_outputs_in_its_prefix(s3, bucket, make_location):
    # Configuration A stores its outputs under `shared-io`; B's data prefix is `shared-io`, its
    # own IO prefix `io2`: B's cleanup would delete A's outputs.
    a = make_location(bucket, prefix="e1", io_prefix="shared-io")
    b = make_location(bucket, prefix="shared-io", io_prefix="io2")
    for asset in ("train", "file_map"):
        _store(s3, bucket, a, asset)
    _store(s3, bucket, b, "train")  # B's own outputs: never a reason to refuse
    put_many(s3, bucket, ["e1/raw/train.csv", "shared-io/aaa-notes.txt"])
    before = keys_in(s3, bucket)
    assert any(k.startswith("shared-io/e1/train/v") for k in before)
    for dry_run in (True, False):
        result = run_cleanup(b, raise_on_error=False, dry_run=dry_run)
        assert not result.success
        message = failure_of(result)
        assert "refusing to clean up" in message and "shared-io/e1/" in message
        assert "a stored step output of another configuration" in message and "S3_ASSETS_PREFIX" in message
        assert "Nothing was deleted" in message
        assert keys_in(s3, bucket) == before


def test_a_pointer_listed_pages_before_its_version_folder_is_not_deleted(s3, bucket, make_location):
    """Pages of 1,000: the value's `manifest.json` is on the first page, its version folder on
    the third. The pointer is held back; the other keys of the first two pages go (and are named
    as deleted: a batch's worth waiting in `x/e1/train/`, the cleanup's probe of that folder's
    `raw/` shows it is no nested configuration's, test_cleanup_nested_configurations); the third
    page is refused before it is queued."""
    location = make_location(bucket, prefix="x", io_prefix="io2")
    version = "v00000000000000000001-0123abcd-somerun"
    plain = [f"x/e1/train/s{i:04d}" for i in range(2000)]
    kept = ["x/e1/train/manifest.json", f"x/e1/train/{version}/manifest.json", f"x/e1/train/{version}/train.parquet"]
    put_many(s3, bucket, plain + kept)
    result = run_cleanup(location, raise_on_error=False, dry_run=False, keep_outputs=True)
    assert not result.success
    message = failure_of(result)
    left = keys_in(s3, bucket)
    assert set(kept) <= left  # the stored value is whole
    assert "1999 object(s) listed before it was found were deleted" in message
    assert left == set(kept) | {"x/e1/train/s1999"}
    assert f"x/e1/train/{version}/" in message


def test_its_own_stored_outputs_and_a_data_manifest_still_go(s3, bucket, make_location):
    location = make_location(bucket, prefix="e5", io_prefix="io5")
    _store(s3, bucket, location, "train")
    put_many(s3, bucket, ["e5/raw/train.csv", "e5/docs/manifest.json", "e50/keep.csv"])
    result = run_cleanup(location, instance=DagsterInstance.ephemeral(), dry_run=False)
    assert result.success
    assert keys_in(s3, bucket) == {"e50/keep.csv"}
