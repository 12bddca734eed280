"""Stored step outputs that are proven, cheap and self-describing (issues 19 §2 and §4, 20 §1
and §3), on the real SeaweedFS: disjoint folders per data prefix, values read only as their
materialization recorded them, a run's own values from memory, few requests per value, and one
Parquet object per frame that folder reads cannot silently union."""

from __future__ import annotations

import hashlib
import io
import json
import re

import dagster
import pandas as pd
import pyarrow.dataset as ds
import pytest
import s3fs
from dagster import (
    AssetMaterialization,
    AssetSelection,
    DagsterInstance,
    RunConfig,
    build_input_context,
    build_output_context,
    job,
    materialize,
    op,
)

from s3_assets.defs import ASSETS, CHECKS
from s3_assets.defs.io_manager import S3ParquetIOManager, recorded_op_output
from s3_assets.defs.maintenance.cleanup import cleanup_job
from s3_assets.defs.resources import S3Connection, S3Prefix
from s3_assets.lib import stored_values
from s3_assets.lib.stored_values import MANIFEST, StoredValueError, read_value, write_value
from s3_assets.lib.text import printable
from s3_assets_tests.conftest import graph_resources
from s3_assets_tests.fault_proxy import FaultProxy

TRAIN_KEY = "ins_dataset/raw/train.csv"


def keys_under(s3, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in p.get("Contents", [])]


def failure_text(result) -> str:
    return "\n".join(str(e.event_specific_data.error) for e in result.all_events if e.event_type_value == "STEP_FAILURE")


def proxied(s3_server, proxy: FaultProxy) -> S3Connection:
    creds = s3_server.server.credentials()
    return S3Connection(target="custom", endpoint_url=proxy.url, region_name="us-east-1", max_attempts=2,
                        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key)


# -- issue 19 §2: no prefix's outputs folder inside another's ------------------------------------

PREFIXES = ["ins_dataset", "e30", "e30/train", "e30%2Ftrain", "e30%252Ftrain", "a/b/c", "a", "a/b", "a%2Fb",
            ".hidden", "x~y", "x%7Ey", "sp ace", "ü/ñ", "l" * 300, "l" * 301, "l" * 300 + "/x"]


@pytest.mark.unit
def test_outputs_folders_of_distinct_prefixes_are_disjoint():
    connection = S3Connection(target="local")
    roots = {prefix: S3Prefix(s3=connection, prefix=prefix).outputs_root() for prefix in PREFIXES}
    assert roots["ins_dataset"] == "dagster-io/ins_dataset/"  # the default keeps its folder
    assert roots["e30/train"] == "dagster-io/e30%2Ftrain/"
    for a, root_a in roots.items():
        assert root_a.startswith("dagster-io/") and root_a.count("/") == 2, (a, root_a)
        assert len(root_a.encode()) <= 11 + stored_values.SEGMENT_MAX_BYTES + 1
        for b, root_b in roots.items():
            if a != b:
                assert not root_a.startswith(root_b), (a, b)


def test_a_cleanup_of_a_nested_prefix_keeps_the_parents_stored_outputs(s3, bucket, make_location, run_graph, uci_dir):
    parent, child = make_location(bucket, prefix="e30"), make_location(bucket, prefix="e30/train")
    instance = DagsterInstance.ephemeral()
    assert run_graph(parent, uci_dir, selection="*train_csv", instance=instance).success
    stored = set(keys_under(s3, bucket, parent.outputs_root() + "train/"))
    assert stored
    cleanup_job.execute_in_process(
        run_config=RunConfig({"delete_objects_under_prefix": {"config": {"dry_run": False}}}),
        resources={"s3_prefix": child}, instance=DagsterInstance.ephemeral())
    assert stored <= set(keys_under(s3, bucket, parent.outputs_root()))
    assert run_graph(parent, uci_dir, selection="train_csv", instance=instance).success


# -- issue 19 §4: a stored value is read only as its materialization recorded it -------------------

@pytest.fixture
def graph(s3, bucket, make_location, uci_dir, tmp_path):
    """A bucket where `*train_csv` was materialized, with the instance that recorded it."""
    location = make_location(bucket)
    instance = DagsterInstance.ephemeral()
    resources = graph_resources(location, uci_dir, tmp_path / "cache")
    assert materialize([*ASSETS, *CHECKS], resources=resources, selection="*train_csv", instance=instance).success
    good = s3.get_object(Bucket=bucket, Key=TRAIN_KEY)

    def copy_train_alone():
        return materialize([*ASSETS, *CHECKS], resources=resources, selection=AssetSelection.assets("train_csv"),
                           instance=instance, raise_on_error=False)

    return location, instance, copy_train_alone, good["Body"].read(), good["ETag"]


def flipped_train_parquet(s3, bucket: str, location: S3Prefix) -> bytes:
    """The stored `train` with CARAVAN flipped: every value still in its domain."""
    folder = location.outputs_root() + "train/"
    [key] = [k for k in keys_under(s3, bucket, folder) if k.endswith(".parquet")]
    frame = pd.read_parquet(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    frame[frame.columns[-1]] = 1 - frame[frame.columns[-1]]
    out = io.BytesIO()
    frame.to_parquet(out)
    return out.getvalue()


def assert_copy_unchanged(s3, bucket, good_body, good_etag):
    got = s3.get_object(Bucket=bucket, Key=TRAIN_KEY)
    assert got["Body"].read() == good_body and got["ETag"] == good_etag


def test_a_planted_parquet_in_place_of_a_stored_value_is_refused_by_name(s3, bucket, graph):
    location, _, copy_train_alone, good_body, good_etag = graph
    planted = flipped_train_parquet(s3, bucket, location)
    for key in keys_under(s3, bucket, location.outputs_root() + "train/"):
        if key.endswith(".parquet"):
            s3.put_object(Bucket=bucket, Key=key, Body=planted)
    result = copy_train_alone()
    assert not result.success
    text = failure_text(result)
    assert "asset 'train'" in text and f"s3://{bucket}/{location.outputs_root()}train/" in text
    assert "changed in the bucket" in text and "Materialize it again" in text
    assert_copy_unchanged(s3, bucket, good_body, good_etag)


def test_a_planted_manifest_in_place_of_the_recorded_one_is_refused(s3, bucket, graph):
    location, _, copy_train_alone, good_body, good_etag = graph
    folder = location.outputs_root() + "train/"
    planted = flipped_train_parquet(s3, bucket, location)
    for key in keys_under(s3, bucket, folder):
        if key.endswith(MANIFEST):  # each manifest now describes the planted file, consistently
            manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            for name, entry in (manifest.get("files") or {}).items():
                entry.update(sha256=hashlib.sha256(planted).hexdigest(), bytes=len(planted))
                s3.put_object(Bucket=bucket, Key=f"{folder}{manifest['version']}/{name}", Body=planted)
            s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
    result = copy_train_alone()
    assert not result.success and "asset 'train'" in failure_text(result)
    assert_copy_unchanged(s3, bucket, good_body, good_etag)


def test_a_planted_newer_version_is_never_read(s3, bucket, graph):
    location, _, copy_train_alone, good_body, good_etag = graph
    folder = location.outputs_root() + "train/"
    planted = pd.read_parquet(io.BytesIO(flipped_train_parquet(s3, bucket, location)))
    write_value(s3, bucket, "elsewhere/", planted)  # a whole, self-consistent value, moved in beside the recorded one
    for key in keys_under(s3, bucket, "elsewhere/"):
        s3.copy_object(Bucket=bucket, Key=folder + key.removeprefix("elsewhere/"), CopySource={"Bucket": bucket, "Key": key})
    result = copy_train_alone()
    assert result.success  # the recorded value was read: the copy is the same bytes
    assert_copy_unchanged(s3, bucket, good_body, good_etag)


def test_a_value_recorded_without_a_hash_is_refused_saying_to_materialize_it_again(s3, bucket, graph):
    _, instance, copy_train_alone, good_body, good_etag = graph
    instance.report_runless_asset_event(AssetMaterialization("train"))  # as an older version recorded it
    result = copy_train_alone()
    assert not result.success
    text = failure_text(result)
    assert "asset 'train' was stored without a recorded hash" in text and "materialize it again" in text
    assert_copy_unchanged(s3, bucket, good_body, good_etag)


def test_a_value_unknown_to_the_instance_is_refused(s3, bucket, make_location, uci_dir, tmp_path, graph):
    location = graph[0]
    result = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, uci_dir, tmp_path / "c2"),
                         selection=AssetSelection.assets("train_csv"), instance=DagsterInstance.ephemeral(),
                         raise_on_error=False)
    assert not result.success
    assert "has no stored value recorded in this Dagster instance" in failure_text(result)


@op
def make_frame() -> pd.DataFrame:
    return pd.DataFrame({"a": [1, 2, 3]})


@op
def total(frame: pd.DataFrame) -> int:
    return int(frame["a"].sum())


@job
def two_ops():
    total(make_frame())


def test_op_outputs_are_proven_by_the_runs_own_output_event(s3, bucket, make_location):
    location = make_location(bucket)
    instance = DagsterInstance.ephemeral()
    manager = S3ParquetIOManager(s3_prefix=location)
    result = two_ops.execute_in_process(resources={"io_manager": manager}, instance=instance)
    assert result.success and result.output_for_node("total") == 6
    recorded = recorded_op_output(build_input_context(instance=instance), result.run_id, "make_frame", "result")
    assert recorded is not None and "stored_value_sha256" in recorded, (
        f"dagster {dagster.__version__}: DagsterInstance.all_logs no longer gives a run's output events "
        "with their metadata (see io_manager.recorded_op_output)")

    def load():
        upstream = build_output_context(step_key="make_frame", name="result", run_id=result.run_id)
        return S3ParquetIOManager(s3_prefix=location).load_input(
            build_input_context(upstream_output=upstream, instance=instance))

    pd.testing.assert_frame_equal(load(), pd.DataFrame({"a": [1, 2, 3]}))
    [key] = [k for k in keys_under(s3, bucket, location.outputs_root() + ".op-outputs/") if k.endswith(".parquet")]
    out = io.BytesIO()
    pd.DataFrame({"a": [100]}).to_parquet(out)
    s3.put_object(Bucket=bucket, Key=key, Body=out.getvalue())
    with pytest.raises(StoredValueError, match="output 'result' of step 'make_frame'.*changed in the bucket"):
        load()


# -- issue 20 §1: memory within a run, few requests per value --------------------------------------

def test_storing_and_loading_a_value_costs_one_request_per_object_without_expect(s3_server, s3, bucket):
    frames = {name: pd.DataFrame({"n": range(100)}) for name in ("train", "test", "gt")}
    with FaultProxy(s3_server.state.ports.s3) as proxy:
        client = proxied(s3_server, proxy).get_client()
        first = write_value(client, bucket, "cost/", frames)
        written = list(proxy.requests)
        proxy.requests.clear()
        write_value(client, bucket, "cost/", frames)
        rewritten = list(proxy.requests)
        proxy.requests.clear()
        stored = write_value(client, bucket, "cost/", frames)
        proxy.requests.clear()
        back = read_value(client, bucket, "cost/", stored.version, stored.sha256)
        loaded = list(proxy.requests)
    assert first.files == 3
    # 3 frames and 2 manifests PUT, then (in the background) one LIST of the folder's versions, whose
    # ETags tell which version the folder's manifest names (was: a GET of the manifest replaced); no HEAD
    assert sorted(m for m, _, _ in written) == ["GET"] + ["PUT"] * 5
    assert ["list-type=2" in p for m, p, _ in written + rewritten if m == "GET"] == [True, True]
    # again: the superseded version removed by one DeleteObjects naming its files
    assert sorted(m for m, _, _ in rewritten) == ["GET", "POST"] + ["PUT"] * 5
    assert not [h for m, _, h in written + rewritten if m == "PUT" and h.get("Expect")]
    assert [m for m, _, _ in loaded] == ["GET"] * 4  # the manifest, then one GET per frame
    assert set(back) == set(frames)
    assert sorted(keys_under(s3, bucket, "cost/")) == sorted(
        ["cost/" + MANIFEST] + [f"cost/{stored.version}/{n}" for n in ("train.parquet", "test.parquet",
                                                                      "gt.parquet", MANIFEST)])


def test_a_run_reads_its_own_values_from_memory_and_still_stores_them(s3_server, s3, bucket, run_graph, uci_dir):
    with FaultProxy(s3_server.state.ports.s3) as proxy:
        location = S3Prefix(s3=proxied(s3_server, proxy), bucket=bucket)
        assert run_graph(location, uci_dir).success
        outputs = f"/{bucket}/{location.outputs_root()}"
        requests = [(m, p) for m, p, _ in proxy.requests if p.startswith(outputs) and "/.locks/" not in p]
    stored_files = [p for m, p in requests if m == "PUT"]
    assert stored_files, "the run stored nothing"
    # nothing of a version folder is read back: every later step had its inputs in memory
    version_folder = re.compile(r"/v\d{20}-[0-9a-f]{8}(-[A-Za-z0-9_-]+)?/")
    assert not [p for m, p in requests if m in ("GET", "HEAD") and version_folder.search(p)]
    assert not [p for m, p in requests if m == "GET" and "list-type" in p]  # and nothing is listed


# -- issue 20 §3: one object per frame, named after it; folder reads fail loudly --------------------

def test_each_frame_is_one_object_named_after_it_and_folder_reads_never_union(s3, bucket, connection):
    train = pd.DataFrame({i: pd.array([1, 2, 3], dtype="uint8") for i in range(3)})
    frames = {"train": train, "gt": pd.DataFrame({"CARAVAN": [0, 1]}),
              "a/b": pd.DataFrame({"x": ["p", "q"]}, index=pd.Index(["r1", "r2"], name="row")),
              "a%2Fb": pd.DataFrame({"y": [1.5]}), ".hidden": pd.DataFrame({"z": [True]})}
    write_value(s3, bucket, "frames/", frames)
    stored = write_value(s3, bucket, "frames/", frames)  # two versions may lie side by side a while
    options = connection.storage_options()
    folder = f"{bucket}/frames/{stored.version}/"
    names = {"train": "train", "gt": "gt", "a/b": "a%2Fb", "a%2Fb": "a%252Fb", ".hidden": "%2Ehidden"}
    for name, frame in frames.items():
        back = pd.read_parquet(f"s3://{folder}{names[name]}.parquet", storage_options=options)
        pd.testing.assert_frame_equal(back, frame)  # names, dtypes and index from the object alone
    fs = s3fs.S3FileSystem(**options)
    for target in (folder, f"{bucket}/frames/"):
        with pytest.raises(Exception, match=MANIFEST):
            pd.read_parquet(f"s3://{target}", storage_options=options)
        with pytest.raises(Exception, match=MANIFEST):
            ds.dataset(target, filesystem=fs).to_table()
    try:
        import polars as pl
    except ImportError:
        return
    with pytest.raises(Exception):  # noqa: B017 - polars' own error types vary by version
        pl.read_parquet(f"s3://{folder}", storage_options=options)


@pytest.mark.parametrize("name", ["", "line\nbreak", "esc\x1b[2J", "\x00"])
def test_frame_names_that_cannot_name_an_object_are_refused_clearly(s3, bucket, name):
    with pytest.raises(StoredValueError, match="frame name|empty name") as error:
        write_value(s3, bucket, "names/", {name: pd.DataFrame({"a": [1]}), "ok": pd.DataFrame({"a": [2]})})
    assert printable(str(error.value)) == str(error.value).replace("\\", "\\\\")
    assert not keys_under(s3, bucket, "names/")


def test_dropping_expect_measures_streams_whose_seek_returns_nothing():
    """s3transfer's part bodies (ReadFileChunk) return None from seek(): the size comes from
    tell(), the position is kept, and a small part loses `Expect`, a big one keeps it."""
    import io

    from s3_assets.lib.stored_values import SMALL_BODY, _drop_expect

    class SeekReturnsNone(io.BytesIO):
        def seek(self, offset: int, whence: int = 0) -> None:  # type: ignore[override]
            super().seek(offset, whence)

    for size, keeps in ((10, False), (SMALL_BODY + 1, True)):
        body = SeekReturnsNone(b"x" * (size + 3))
        body.seek(3)
        params = {"headers": {"Expect": "100-continue"}, "body": body}
        _drop_expect(params)
        assert ("Expect" in params["headers"]) is keeps and body.tell() == 3
    params = {"headers": {"Expect": "100-continue"}, "body": b"small"}
    _drop_expect(params)
    assert "Expect" not in params["headers"]
