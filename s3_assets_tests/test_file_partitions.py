"""One dynamic partition per data file: stable, reversible partition keys; the sensor adds,
deletes and re-runs partitions as files come, go and change; Dagster's limits are enforced."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import DagsterInstance, build_sensor_context, materialize
from dagster._core.definitions.partitions.utils.base import INVALID_PARTITION_SUBSTRINGS
from hypothesis import given, settings
from hypothesis import strategies as st

from s3_assets.defs.io_manager import S3ParquetIOManager
from s3_assets.lib.file_partitions import partition_key, plan_partitions, relative_key
from s3_assets.per_file import file_frame, s3_files
from s3_assets.per_file.sensor import build_file_partitions_sensor


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=120))
def test_partition_keys_are_stable_reversible_and_valid(key):
    encoded = partition_key(key)
    assert relative_key(encoded) == key and partition_key(key) == encoded
    assert not any(bad in encoded for bad in INVALID_PARTITION_SUBSTRINGS)
    assert not any(char in encoded for char in ",|/") and encoded not in (".", "..")
    assert encoded.isprintable()


def test_readable_keys_stay_readable():
    assert partition_key("raw/train.csv") == "raw%2Ftrain.csv"
    assert partition_key("a...b") == "a.%2E%2Eb" and partition_key("..") == "%2E%2E"
    assert partition_key("50%,x|y") == "50%25%2Cx%7Cy"


def test_plan_carries_changes_over_the_tick_limit_and_refuses_partitions_over_the_cap():
    current = {f"f{i:02d}": ("e", 1) for i in range(12)}
    first = plan_partitions(set(), {}, current, max_changes=5, max_partitions=8)
    assert first.add == ["f00", "f01", "f02", "f03", "f04"] and first.run == first.add
    assert first.carried == 3 and first.refused == ["f08", "f09", "f10", "f11"]
    second = plan_partitions(set(first.add), first.baseline, current, max_changes=5, max_partitions=8)
    assert second.add == ["f05", "f06", "f07"] and second.carried == 0
    assert len(second.refused) == 4
    # Deletions go first and free room under the cap.
    known = set(first.add + second.add)
    fewer = {k: v for k, v in current.items() if k not in ("f00", "f01")}
    third = plan_partitions(known, second.baseline, fewer, max_changes=5, max_partitions=8)
    assert third.delete == ["f00", "f01"] and third.add == ["f08", "f09"] and third.refused == ["f10", "f11"]


def _csv(i: int, version: str = "v1") -> bytes:
    return f"id,value,version\n{i},{i * 10},{version}\n{i + 1},{i * 10 + 1},{version}\n".encode()


def _apply(instance: DagsterInstance, result) -> None:
    """What the sensor daemon does with the tick's partition requests."""
    for request in result.dynamic_partitions_requests:
        if type(request).__name__ == "AddDynamicPartitionsRequest":
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def stored_frame(s3, bucket: str, location, partition: str) -> pd.DataFrame:
    """A partition's output as the IO manager stored it (its folder's current version)."""
    from s3_assets.lib.stored_values import key_segment, read_value

    return read_value(s3, bucket, f"{location.outputs_root()}file_frame/{key_segment(partition)}/")


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "home").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "home")) as instance:
        yield instance


def test_sensor_adds_deletes_and_reruns_partitions(s3, bucket, make_location, instance):
    location = make_location(bucket)
    keys = [f"ins_dataset/files/part-{i:03d}.csv" for i in range(200)]
    for i, key in enumerate(keys):  # one by one: see conftest on SeaweedFS and concurrent writes
        s3.put_object(Bucket=bucket, Key=key, Body=_csv(i))
    s3.put_object(Bucket=bucket, Key="ins_dataset/files/readme.txt", Body=b"not data")
    s3.put_object(Bucket=bucket, Key="ins_dataset/files/folder/", Body=b"")
    sensor = build_file_partitions_sensor()
    partition_of = {key: partition_key(key.removeprefix("ins_dataset/")) for key in keys}

    def tick():
        with build_sensor_context(instance=instance, resources={"s3_prefix": location},
                                  cursor=instance_cursor.get("cursor")) as context:
            result = sensor(context)
        instance_cursor["cursor"] = result.cursor
        _apply(instance, result)
        return result

    instance_cursor: dict = {}
    first = tick()  # 200 files -> 200 partitions, each run once
    assert sorted(instance.get_dynamic_partitions(s3_files.name)) == sorted(partition_of.values())
    assert sorted(r.partition_key for r in first.run_requests) == sorted(partition_of.values())
    assert tick().skip_reason is not None  # nothing changed: nothing to do

    for key in keys[:50]:  # 50 deleted -> their partitions removed, nothing run
        s3.delete_object(Bucket=bucket, Key=key)
    deleted = tick()
    assert not deleted.run_requests
    assert sorted(instance.get_dynamic_partitions(s3_files.name)) == sorted(partition_of[k] for k in keys[50:])

    changed_keys = keys[100:110]  # 10 changed -> exactly those 10 re-run
    for key in changed_keys:
        s3.put_object(Bucket=bucket, Key=key, Body=_csv(keys.index(key), "v2"))
    changed = tick()
    assert not changed.dynamic_partitions_requests
    assert sorted(r.partition_key for r in changed.run_requests) == sorted(partition_of[k] for k in changed_keys)
    assert len(instance.get_dynamic_partitions(s3_files.name)) == 150

    resources = {"s3_prefix": location, "io_manager": S3ParquetIOManager(s3_prefix=location)}
    for request in changed.run_requests:
        assert materialize([file_frame], partition_key=request.partition_key, resources=resources,
                           instance=instance).success
    for key in changed_keys:
        frame = stored_frame(s3, bucket, location, partition_of[key])
        i = keys.index(key)
        assert frame["id"].tolist() == [i, i + 1] and frame["version"].tolist() == ["v2", "v2"]


def test_partitions_of_deleted_files_are_removed(bucket, make_location, instance):
    from dagster import build_op_context

    from s3_assets.per_file.retention import remove_file_partitions

    location = make_location(bucket)
    instance.add_dynamic_partitions(s3_files.name, ["a.csv", "raw%2Fb.csv", "kept.csv"])
    with build_op_context(instance=instance) as context:
        removed = remove_file_partitions(context, location, ["ins_dataset/a.csv", "ins_dataset/raw/b.csv",
                                                             "ins_dataset/never-a-partition.csv", "other/kept.csv"])
    assert removed == ["a.csv", "raw%2Fb.csv"]
    assert instance.get_dynamic_partitions(s3_files.name) == ["kept.csv"]


def test_sync_job_makes_one_partition_per_csv_file(s3, bucket, make_location, instance):
    from s3_assets.per_file import sync_file_partitions_job

    location = make_location(bucket)
    for name in ("a.csv", "raw/b.csv", "notes.txt"):
        s3.put_object(Bucket=bucket, Key=f"ins_dataset/{name}", Body=b"x,y\n1,2\n")
    instance.add_dynamic_partitions(s3_files.name, ["gone.csv"])
    assert sync_file_partitions_job.execute_in_process(resources={"s3_prefix": location}, instance=instance).success
    assert sorted(instance.get_dynamic_partitions(s3_files.name)) == ["a.csv", "raw%2Fb.csv"]


def test_cleanup_job_removes_the_partitions_of_what_it_deleted(s3, bucket, make_location, instance):
    from dagster import RunConfig

    from s3_assets.defs.maintenance.cleanup import cleanup_job

    location = make_location(bucket)
    for name in ("a.csv", "raw/b.csv"):
        s3.put_object(Bucket=bucket, Key=f"ins_dataset/{name}", Body=b"x,y\n1,2\n")
    instance.add_dynamic_partitions(s3_files.name, ["a.csv", "raw%2Fb.csv", "no-such-file.csv"])

    def clean(dry_run: bool) -> None:
        assert cleanup_job.execute_in_process(
            run_config=RunConfig({"delete_objects_under_prefix": {"config": {"dry_run": dry_run}}}),
            resources={"s3_prefix": location}, instance=instance).success

    clean(dry_run=True)  # a dry run deletes nothing, so keeps every partition
    assert len(instance.get_dynamic_partitions(s3_files.name)) == 3
    clean(dry_run=False)
    assert instance.get_dynamic_partitions(s3_files.name) == ["no-such-file.csv"]  # not deleted by this cleanup

