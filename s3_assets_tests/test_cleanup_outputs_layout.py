"""A cleanup decides every key under its own stored-outputs folder by name (issue 19, "B2"): A
(`S3_ASSETS_PREFIX=p1`, `S3_ASSETS_IO_PREFIX=myio`) keeps its outputs in `myio/p1/`; B, with
`S3_ASSETS_IO_PREFIX=myio/p1` (or deeper), keeps its own in `myio/p1/<B's prefix>/`, inside
A's. A's cleanup deleted B's stored values as its own and succeeded. Now only the layout A's IO
manager writes there (its assets' values, its per-file partitions, its op outputs, an older
release's lock notes and values) is A's; anything else is refused, dry run too, naming it
(escaped) and saying what to do. Also: the message of a cleanup whose listing failed counts only
what was sent (held-back keys are named as such), and a nested configuration's advice in versions
mode names `delete_versions: true`."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, build_input_context, materialize

from s3_assets.defs.io_manager import S3ParquetIOManager
from s3_assets.defs.maintenance.cleanup import own_output
from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.file_partitions import partition_key
from s3_assets.lib.stored_values import key_segment
from s3_assets.lib.text import printable
from s3_assets.per_file import file_frame, s3_files
from s3_assets_tests.fault_proxy import FaultProxy
from s3_assets_tests.test_cleanup import keys_in
from s3_assets_tests.test_cleanup_safety import custom, failure_of, run_cleanup
from s3_assets_tests.test_listing import put_many
from s3_assets_tests.test_stored_outputs import two_ops  # its op outputs: `.op-outputs/<run>/make_frame/result/`

NOT_OURS = "whose name is not a layout this configuration writes there"
OTHER_RUN = "0f1e2d3c-4b5a-4968-8776-655443322110"
VERSION = "v00000000000000000001-0123abcd"
RUN = "5b1d7c3e-2f4a-4e8b-9c6d-1a2b3c4d5e6f"
SMALL = ["dictionary_text", "data_dictionary", "train"]  # stored values, no copies, checks whole


def under(keys: set[str], root: str) -> set[str]:
    return {key for key in keys if key.startswith(root)}


def refused(location: S3Prefix, instance: DagsterInstance, *, dry_run: bool, **config) -> str:
    result = run_cleanup(location, instance=instance, raise_on_error=False, dry_run=dry_run, **config)
    assert not result.success
    return failure_of(result)


@pytest.mark.parametrize(("b_io", "b_prefix"), [
    ("myio/p1", "q"),
    ("myio/p1", "train"),           # B's outputs folder is A's `train/` value folder
    ("myio/p1", VERSION),           # named like a version folder
    ("myio/p1", ".op-outputs"),     # named like A's op outputs (encoded `%2Eop-outputs`)
    ("myio/p1/.op-outputs", "q"),   # B's outputs inside A's op outputs
    ("myio/p1", "file_frame"),      # B's `<asset>/` shaped like A's per-file partitions
    ("myio/p1/x", "q"),             # a deeper IO prefix
])
def test_another_configurations_stored_outputs_inside_this_ones_are_refused(
        s3, bucket, make_location, run_graph, uci_dir, b_io, b_prefix):
    instance = DagsterInstance.ephemeral()
    a = make_location(bucket, prefix="p1", io_prefix="myio")
    b = make_location(bucket, prefix=b_prefix, io_prefix=b_io)
    assert b.outputs_root().startswith(a.outputs_root())
    run_graph(a, uci_dir, selection=SMALL, instance=instance)
    run_graph(b, uci_dir, selection=SMALL, instance=instance)
    before = keys_in(s3, bucket)
    theirs = under(before, b.outputs_root())
    assert any(key.endswith(".parquet") for key in theirs) and any(key.endswith("manifest.json") for key in theirs)
    for dry_run in (True, False):
        message = refused(a, instance, dry_run=dry_run)
        assert "refusing to clean up" in message and NOT_OURS in message and "Nothing was deleted" in message
        assert "S3_ASSETS_IO_PREFIX lies inside this one's outputs folder" in message
        named = message.split(": it holds ", 1)[1].split(": an object inside", 1)[0]
        assert named in theirs, named
        assert keys_in(s3, bucket) == before
    value = S3ParquetIOManager(s3_prefix=b).load_input(build_input_context(asset_key=AssetKey("train"), instance=instance))
    assert isinstance(value, pd.DataFrame) and len(value) > 0
    if b_prefix == "train":  # B's outputs folder holds A's `train` value: B's cleanup refuses it likewise
        assert NOT_OURS in refused(b, instance, dry_run=False) and keys_in(s3, bucket) == before
        return
    # B's own cleanup first, as the message says; then A's goes through.
    assert run_cleanup(b, instance=instance, dry_run=False).success
    assert run_cleanup(a, instance=instance, dry_run=False).success
    assert not under(keys_in(s3, bucket), "myio/")


def test_its_own_outputs_all_go_and_a_stray_key_is_refused_first(s3, bucket, make_location, run_graph, uci_dir):
    """A's whole graph, a per-file partition and a job's op outputs, stored for real, plus what an
    older release left there (format 1 values and op outputs, `.locks/` notes): with a stray key
    beside them the cleanup refuses, naming it, and deletes nothing of the outputs folder; without
    it, everything goes."""
    instance = DagsterInstance.ephemeral()
    a = make_location(bucket, prefix="p1", io_prefix="myio")
    root = a.outputs_root()
    run_graph(a, uci_dir, instance=instance)
    partition = partition_key("raw/train.csv")
    instance.add_dynamic_partitions(s3_files.name, [partition])
    resources = {"s3_prefix": a, "io_manager": S3ParquetIOManager(s3_prefix=a)}
    assert materialize([file_frame], partition_key=partition, resources=resources, instance=instance).success
    assert two_ops.execute_in_process(resources={"io_manager": S3ParquetIOManager(s3_prefix=a)},
                                      instance=instance).success
    older = [f"train/{VERSION}/part-0000.parquet", f"storage/{RUN}/make_frame/result/manifest.json",
             f"storage/{RUN}/make_frame/result/{VERSION}/part-0000.parquet", ".locks/cleanup.json",
             f".locks/writers/{RUN}/host-123-0123abcd.json"]
    put_many(s3, bucket, [root + key for key in older])
    ours = under(keys_in(s3, bucket), root)
    for layout in ("file_frame/raw%252Ftrain.csv/manifest.json", ".op-outputs/", "modelling_table/manifest.json",
                   "dataframes/v"):
        assert any(key.startswith(root + layout) for key in ours), layout

    stray = root + "notes\x1b[31m\u202e.txt"
    put_many(s3, bucket, [stray])
    before = keys_in(s3, bucket)
    for dry_run in (True, False):
        message = refused(a, instance, dry_run=dry_run)
        assert f"it holds {printable(stray)}: " in message and NOT_OURS in message
        assert "\x1b" not in message and "\u202e" not in message
        # The data prefix is listed (and its copies deleted, as the message says) before the
        # outputs folder; nothing of the outputs folder is sent.
        assert under(keys_in(s3, bucket), root) == under(before, root)
        assert keys_in(s3, bucket) == before if dry_run else "listed before it was found were deleted" in message
    s3.delete_object(Bucket=bucket, Key=stray)
    assert run_cleanup(a, instance=instance, dry_run=False).success
    assert not under(keys_in(s3, bucket), root) and not under(keys_in(s3, bucket), "p1/")


@pytest.mark.parametrize("stray", [
    "notes.txt",
    f"train/{VERSION}/sub/train.parquet",        # a version folder holds no folder
    "train/manifest.json.bak",
    f"train/{VERSION}/train.csv",
    "file_frame/train/manifest.json",            # no `.csv` partition
    f".op-outputs/q/make_frame/result/{VERSION}/data.parquet",  # no run id
    ".locks/writers/x.json",
    "other\\asset/manifest.json",                # `\` (stored as `/` by SeaweedFS)
    f".op-outputs/{RUN}/make_frame/result/{VERSION}-{OTHER_RUN}/data.parquet",  # another run's version
    f"storage/{RUN}/make_frame/result/{VERSION}/data.parquet",  # format 1 wrote part-NNNN.parquet only
])
def test_a_stray_key_under_its_outputs_is_refused_by_name(s3, bucket, make_location, stray):
    a = make_location(bucket, prefix="p1", io_prefix="myio")
    own = [a.outputs_root() + "train/manifest.json"]
    put_many(s3, bucket, own + [a.outputs_root() + stray])
    before = keys_in(s3, bucket)
    (stored,) = before - set(own)
    for dry_run in (True, False):
        message = refused(a, DagsterInstance.ephemeral(), dry_run=dry_run)
        assert f"it holds {printable(stored)}: " in message and NOT_OURS in message
        assert keys_in(s3, bucket) == before


def test_an_interrupted_listing_counts_only_what_was_sent(s3_server, s3, bucket):
    """Review item 7: 3 keys directly under `grp/` go at once, 997 in `grp/e5/` wait (they may be
    a nested configuration's); the second page's LIST fails. The message says 3 were sent and 997
    held back, not "1000 had been sent"."""
    direct = [f"grp/0own{i}.txt" for i in range(3)]
    waiting = [f"grp/e5/a{i:04d}.csv" for i in range(1100)]
    put_many(s3, bucket, direct + waiting)

    def rule(method: str, path: str) -> str:
        later_page = "list-type=2" in path and ("continuation-token" in path or "start-after" in path)
        return "internal_error" if method == "GET" and later_page and "prefix=grp%2F" in path else "pass"

    with FaultProxy(s3_server.state.ports.s3, rule=rule) as proxy:
        location = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket, prefix="grp")
        message = refused(location, DagsterInstance.ephemeral(), dry_run=False, keep_outputs=True)
    assert "failed after 3 listed object(s) had been sent for deletion" in message, message
    assert "997 listed object(s) were held back" in message
    assert keys_in(s3, bucket) == set(waiting)


def test_a_nested_configuration_in_versions_mode_is_told_to_delete_versions(s3, bucket, make_location):
    """Review item 10: with `delete_versions: true` the parent lists old versions and delete
    markers; a nested configuration cleaned without it leaves its old versions, which keep the
    parent refusing. The advice says `delete_versions: true` for its cleanup, and that works."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put_many(s3, bucket, ["grp/e5/raw/train.csv", "grp/own.txt"])
    nested, parent = make_location(bucket, prefix="grp/e5"), make_location(bucket, prefix="grp")
    assert run_cleanup(nested, dry_run=False).success  # only a delete marker
    assert keys_in(s3, bucket) == {"grp/own.txt"}
    message = refused(parent, DagsterInstance.ephemeral(), dry_run=False, delete_versions=True)
    assert "S3_ASSETS_PREFIX=grp/e5" in message and "delete_versions: true" in message
    assert run_cleanup(nested, dry_run=False, delete_versions=True).success
    assert run_cleanup(parent, dry_run=False, delete_versions=True).success
    assert not s3.list_object_versions(Bucket=bucket, Prefix="grp/").get("Versions")


@pytest.mark.parametrize("relative", ["a.csv", "raw/b.CSV", "a..csv", ".csv", "x.csv/", "\u00e9 \u00fc.csv", "x%y.csv",
                                      "deep/" * 60 + "long.csv"])
def test_every_partition_folder_the_sensor_can_make_is_its_own(relative):
    """A `file_frame` partition's folder, this release's (`key_segment` of the partition key,
    hashed when long) and older ones' (the partition key): its own, whatever the file's name
    (a dot the partition key encodes, upper-case extension, a trailing `/`, non-ASCII)."""
    for segment in (key_segment(partition_key(relative)), partition_key(relative)):
        assert own_output(f"file_frame/{segment}/manifest.json"), segment
        assert own_output(f"file_frame/{segment}/{VERSION}/file_frame.parquet"), segment
    assert not own_output(f"file_frame/{key_segment(partition_key(relative))}/train/manifest.json")


def test_an_op_outputs_version_is_its_own_only_with_its_runs_tag():
    """Another configuration whose IO prefix is `<this outputs root>/.op-outputs/<a uuid>` writes
    versions tagged with its own runs: not this configuration's op outputs."""
    folder = f".op-outputs/{RUN}/make_frame/result"
    assert own_output(f"{folder}/{VERSION}-{RUN}/result.parquet") and own_output(f"{folder}/{VERSION}/result.parquet")
    assert not own_output(f"{folder}/{VERSION}-{OTHER_RUN}/result.parquet")
