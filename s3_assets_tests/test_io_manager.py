"""Stored step outputs: Parquet and JSON under `<io_prefix>/<prefix>/`, readable by pandas
without this project, never pickles, and never half of one value and half of another."""

from __future__ import annotations

import io
import json
import pickle

import pandas as pd
import pytest

from s3_assets.lib import stored_values
from s3_assets.lib.dictionary import DataDictionary
from s3_assets.lib.stored_values import MANIFEST, StoredValueError, read_value, write_value

PARQUET_MAGIC = b"PAR1"


def all_objects(s3, bucket: str, prefix: str = "") -> dict[str, bytes]:
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for o in p.get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def test_graph_outputs_are_parquet_and_json_that_pandas_reads(s3, bucket, make_location, run_graph, uci_dir):
    assert run_graph(make_location(bucket), uci_dir).success
    everything = all_objects(s3, bucket, "dagster-io/")
    # Only the outputs: the run's lock note lives in the bucket's `.s3-assets-locks/` and went at its end.
    assert not all_objects(s3, bucket, ".s3-assets-locks/")
    stored = everything
    assert stored, "the graph stored no outputs"
    assert all(key.startswith("dagster-io/ins_dataset/") for key in stored)
    for key, body in stored.items():
        if key.endswith(".parquet"):
            assert body[:4] == PARQUET_MAGIC and body[-4:] == PARQUET_MAGIC, key
        else:
            assert key.endswith("/" + MANIFEST), key
            assert json.loads(body)["format"] == stored_values.FORMAT
        assert b"\x80\x04\x95" not in body[:3] and b"\x80\x05\x95" not in body[:3], f"{key} looks like a pickle"

    # The dict of frames: one Parquet object per frame, named after it; plain pandas reads it.
    manifest = json.loads(stored["dagster-io/ins_dataset/dataframes/" + MANIFEST])
    version = manifest["version"]
    assert stored[f"dagster-io/ins_dataset/dataframes/{version}/{MANIFEST}"] == \
        stored["dagster-io/ins_dataset/dataframes/" + MANIFEST]
    assert set(manifest["value"]["frames"]) == {"train", "test", "gt"}
    assert {k.rsplit("/", 1)[1] for k in stored if k.startswith(f"dagster-io/ins_dataset/dataframes/{version}/")} \
        == {"train.parquet", "test.parquet", "gt.parquet", MANIFEST}
    train = pd.read_parquet(io.BytesIO(stored[f"dagster-io/ins_dataset/dataframes/{version}/train.parquet"]))
    assert train.shape == (5822, 86) and train.columns[-1] == "CARAVAN"
    # Small values are JSON in the manifest: the file map is readable as it is.
    file_map = json.loads(stored["dagster-io/ins_dataset/file_map/" + MANIFEST])["value"]["value"]
    assert file_map == {name: f"s3://{bucket}/ins_dataset/raw/{name}.csv" for name in ("gt", "test", "train")}


def test_values_round_trip_with_their_types(s3, bucket):
    frame = pd.DataFrame({
        0: pd.array([1, 2, 3], dtype="uint8"),
        1: pd.Categorical(["a", "b", "a"]),
        2: pd.to_datetime(["2026-11-24 10:00:00", "2026-11-24 10:00:01", None], utc=True),
        3: pd.array(["x", None, "z"], dtype="string"),
    })
    dictionary = DataDictionary(
        features=pd.DataFrame({"nr": [1], "name": ["MOSTYPE"], "description": ["Customer Subtype"]}),
        value_tables={"L0": pd.DataFrame({"value": [1], "label": ["High Income"]})},
    )
    for value in (frame, {"train": frame, "with space/and slash": frame.head(1)}, dictionary,
                  {"name": "s3://b/k", "n": 3, "nested": [1, None, "x"]}, [], "text", None):
        base = f"values/{type(value).__name__}/"
        write_value(s3, bucket, base, value)
        back = read_value(s3, bucket, base)
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(back, value)
        elif isinstance(value, DataDictionary):
            pd.testing.assert_frame_equal(back.features, value.features)
            pd.testing.assert_frame_equal(back.value_tables["L0"], value.value_tables["L0"])
        elif isinstance(value, dict) and all(isinstance(v, pd.DataFrame) for v in value.values()) and value:
            assert set(back) == set(value)
            for name in value:
                pd.testing.assert_frame_equal(back[name], value[name])
        else:
            assert back == value


def test_a_value_that_is_neither_frame_nor_json_is_refused_by_type(s3, bucket):
    with pytest.raises(StoredValueError, match="a set cannot be stored"):
        write_value(s3, bucket, "bad/", {1, 2})
    with pytest.raises(StoredValueError, match="a float cannot be stored"):
        write_value(s3, bucket, "bad/", float("nan"))
    with pytest.raises(StoredValueError, match="column names of types .*tuple"):
        write_value(s3, bucket, "bad/", pd.DataFrame({("a", 1): [1]}))
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="bad/")


class Boom:
    def __reduce__(self):
        import os

        return (os.system, ("echo planted >&2",))


V = "v" + "0" * 20 + "-0123abcd"


@pytest.mark.parametrize("planted", [
    pickle.dumps(Boom()),
    json.dumps({"format": stored_values.FORMAT, "version": V, "files": {}, "value": {"kind": "dataclass",
                "type": "os.system", "fields": {}}}).encode(),
    json.dumps({"format": stored_values.FORMAT, "version": V, "files": {"x": {"sha256": "0"}},
                "value": {"kind": "pickle", "file": "x"}}).encode(),
    json.dumps({"format": stored_values.FORMAT, "version": V, "files": {"../../elsewhere.parquet": {"sha256": "0"}},
                "value": {"kind": "frame", "file": "../../elsewhere.parquet"}}).encode(),
    json.dumps({"format": stored_values.FORMAT, "version": "../x", "files": {}, "value": {"kind": "json",
                "value": 1}}).encode(),
    b"",
])
def test_planted_manifests_are_refused_and_nothing_runs(s3, bucket, planted, capfd):
    s3.put_object(Bucket=bucket, Key="planted/" + MANIFEST, Body=planted)
    with pytest.raises(StoredValueError):
        read_value(s3, bucket, "planted/")
    assert "planted" not in capfd.readouterr().err


def test_a_failed_write_leaves_the_previous_value_readable(s3, bucket):
    good = pd.DataFrame({"a": [1, 2]})
    write_value(s3, bucket, "v/", good)
    # The second frame cannot be stored (a column of arbitrary objects): the write fails after
    # the first frame was uploaded, before any manifest.
    broken = {"first": pd.DataFrame({"a": [3]}), "second": pd.DataFrame({"a": [object()]})}
    with pytest.raises(StoredValueError, match="cannot be stored as Parquet"):
        write_value(s3, bucket, "v/", broken)
    pd.testing.assert_frame_equal(read_value(s3, bucket, "v/"), good)


def test_older_versions_are_removed_after_a_write(s3, bucket):
    for n in range(3):
        write_value(s3, bucket, "w/", pd.DataFrame({"n": [n]}))
    stored = all_objects(s3, bucket, "w/")
    version = json.loads(stored["w/" + MANIFEST])["version"]
    assert sorted(stored) == ["w/" + MANIFEST, f"w/{version}/data.parquet", f"w/{version}/{MANIFEST}"]
    assert read_value(s3, bucket, "w/")["n"].tolist() == [2]
