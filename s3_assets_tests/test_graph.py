"""The whole asset graph against the real SeaweedFS: the S3 copies are exactly what the
notebook wrote, re-running changes nothing, and the loaded frames are parsed and named."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from s3_assets.defs.resources import S3Connection, S3Prefix
from s3_assets.lib.errors import ConfigError
from s3_assets_tests.conftest import materialization_metadata
from s3_assets_tests.uci_fixtures import tables

COPIES = {
    "raw/train.csv": "ticdata2000.txt",
    "raw/test.csv": "ticeval2000.txt",
    "raw/gt.csv": "tictgts2000.txt",
}


def notebook_csv(path, **kwargs) -> bytes:
    """What the notebook uploaded: read_table, then to_csv(index=False)."""
    return pd.read_table(path, **kwargs).to_csv(index=False).encode()


def test_whole_graph_writes_notebook_identical_copies(s3, bucket, make_location, run_graph, uci_dir):
    location = make_location(bucket)
    result = run_graph(location, uci_dir)
    assert result.success
    for relative, source in COPIES.items():
        body = s3.get_object(Bucket=bucket, Key=f"ins_dataset/{relative}")["Body"].read()
        assert body == notebook_csv(uci_dir / source, header=None)
    col_info = s3.get_object(Bucket=bucket, Key="ins_dataset/raw/metadata/col_info.csv")["Body"].read()
    assert col_info == notebook_csv(uci_dir / "dictionary.txt", encoding="latin-1")

    meta = materialization_metadata(result, "train_csv")
    train_body = notebook_csv(uci_dir / "ticdata2000.txt", header=None)
    assert meta["size_bytes"] == len(train_body)
    assert meta["etag"] == hashlib.md5(train_body).hexdigest()
    assert meta["dagster/uri"] == f"s3://{bucket}/ins_dataset/raw/train.csv"
    assert meta["dagster/row_count"] == 5822
    assert "open" not in meta  # no link into the closed file browser: the uri is the address
    # The local endpoint is shown as text for other clients (issue 22 §5), never as a link.
    assert not any("http" in str(value) for key, value in meta.items() if key != "s3_endpoint")

    frames = result.output_for_node("dataframes")
    expected = tables()
    assert set(frames) == {"train", "test", "gt"}
    assert frames["train"].shape == (5822, 86)
    assert frames["test"].shape == (4000, 85)
    assert frames["gt"].shape == (4000, 1)
    assert list(frames["gt"].columns) == ["CARAVAN"]
    assert frames["train"].columns[0] == "MOSTYPE" and frames["train"].columns[-1] == "CARAVAN"
    assert list(frames["test"].columns) == list(frames["train"].columns[:85])
    assert all(pd.api.types.is_integer_dtype(t) for t in frames["train"].dtypes)
    assert (frames["train"].to_numpy() == expected["ticdata2000.txt"].to_numpy()).all()


def test_rematerializing_is_idempotent(s3, bucket, make_location, run_graph, uci_dir):
    location = make_location(bucket)
    run_graph(location, uci_dir)
    before = {o["Key"]: (o["ETag"], o["Size"]) for o in s3.list_objects_v2(Bucket=bucket, Prefix="ins_dataset/")["Contents"]}
    second = run_graph(location, uci_dir)
    after = {o["Key"]: (o["ETag"], o["Size"]) for o in s3.list_objects_v2(Bucket=bucket, Prefix="ins_dataset/")["Contents"]}
    assert before == after and len(after) == 4
    assert materialization_metadata(second, "train_csv")["uploaded"] is False


@pytest.mark.real_data
def test_real_files_give_the_notebook_sizes(s3, bucket, make_location, run_graph, real_dir):
    location = make_location(bucket)
    result = run_graph(location, real_dir)
    sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ins_dataset/")["Contents"]}
    assert sizes == {
        "ins_dataset/raw/train.csv": 1_006_399,
        "ins_dataset/raw/test.csv": 683_549,
        "ins_dataset/raw/gt.csv": 8_002,
        "ins_dataset/raw/metadata/col_info.csv": 4_823,
    }
    frames = result.output_for_node("dataframes")
    assert {name: frame.shape for name, frame in frames.items()} == {
        "train": (5822, 86), "test": (4000, 85), "gt": (4000, 1)}
    assert frames["train"].columns[0] == "MOSTYPE" and list(frames["gt"].columns) == ["CARAVAN"]
    assert all(str(t) == "uint8" for t in frames["train"].dtypes)
    assert int(frames["train"]["CARAVAN"].sum()) == 348
    assert int(frames["gt"]["CARAVAN"].sum()) == 238
    columns = result.output_for_node("dictionary_text")
    assert columns.shape == (170, 1) and list(columns.columns) == ["DATA DICTIONARY"]


def test_missing_bucket_is_created_on_local(s3, make_location, run_graph, uci_dir):
    bucket = "auto-created-bucket"
    run_graph(make_location(bucket), uci_dir, selection=["dictionary_text", "col_info_csv"])
    assert s3.head_bucket(Bucket=bucket)


def test_missing_bucket_on_a_custom_endpoint_is_a_clear_error(s3_server):
    creds = s3_server.server.credentials()
    connection = S3Connection(
        target="custom", endpoint_url=s3_server.state.endpoint_url, region_name="us-east-1",
        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
    )
    location = S3Prefix(s3=connection, bucket="no-such-bucket-here")
    with pytest.raises(ConfigError, match="bucket .no-such-bucket-here. does not exist at http.*S3_ASSETS_CREATE_BUCKET"):
        location.connect()  # connects and checks the bucket


def test_custom_endpoint_creates_the_bucket_when_asked(s3_server):
    creds = s3_server.server.credentials()
    connection = S3Connection(
        target="custom", endpoint_url=s3_server.state.endpoint_url, region_name="us-east-1",
        aws_access_key_id=creds.access_key_id, aws_secret_access_key=creds.secret_access_key,
    )
    location = S3Prefix(s3=connection, bucket="opted-in-bucket", create_bucket=True)
    location.connect().put_object(Bucket="opted-in-bucket", Key="ins_dataset/x", Body=b"1")
    assert s3_server.client().head_object(Bucket="opted-in-bucket", Key="ins_dataset/x")["ContentLength"] == 1
