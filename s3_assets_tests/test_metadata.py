"""Materialization metadata as a Dagster user reads it: standard keys (`dagster/uri`,
`dagster/row_count`) meaning what Dagster means by them, units in the names, previews that show
the columns people look for, and outside text shown as it is meant."""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterInstance

from s3_assets.defs.metadata import LISTING_COLUMNS, LISTING_PREVIEW_COLUMNS
from s3_assets_tests.conftest import materialization_metadata


@pytest.fixture(scope="module")
def graph_run(s3_server, uci_dir, tmp_path_factory):
    """One run of the whole graph on the generated UCI files (40 train, 20 test rows)."""
    import uuid

    from s3_assets.defs.resources import S3Connection, S3Prefix
    from s3_assets_tests.conftest import graph_resources

    bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3_server.client().create_bucket(Bucket=bucket)
    location = S3Prefix(s3=S3Connection(target="local", local_dir=s3_server.local_dir, max_attempts=2),
                        bucket=bucket)
    from dagster import materialize

    from s3_assets.defs import ASSETS, CHECKS

    result = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, uci_dir, tmp_path_factory.mktemp("c")),
                         instance=DagsterInstance.ephemeral())
    assert result.success
    return result, bucket


def test_s3_copies_use_the_standard_uri_and_say_the_size_unit(graph_run):
    result, bucket = graph_run
    meta = materialization_metadata(result, "gt_csv")
    assert meta["dagster/uri"] == f"s3://{bucket}/ins_dataset/raw/gt.csv"
    assert meta["size_bytes"] > 0
    assert "uri" not in meta and "size" not in meta


def test_no_metadata_key_calls_something_else_a_uri(graph_run):
    """`uri` means the asset's data in S3 (the copies); no other asset may use the word."""
    result, _ = graph_run
    for event in result.get_asset_materialization_events():
        keys = set(event.materialization.metadata)
        name = event.asset_key.to_user_string()
        assert not {k for k in keys if "uri" in k.lower() and k != "dagster/uri"}, (name, keys)
        if "dagster/uri" in keys:
            assert name.endswith("_csv"), name


def test_dataframes_report_each_frame_and_no_summed_row_count(graph_run):
    result, _ = graph_run
    meta = materialization_metadata(result, "dataframes")
    assert "dagster/row_count" not in meta and "dagster/column_schema" not in meta
    rows = {record.data["name"]: record.data for record in meta["frames"].records}
    assert {name: (row["rows"], row["columns"]) for name, row in rows.items()} == {
        "train": (40, 86), "test": (20, 85), "gt": (20, 1)}
    assert rows["gt"]["schema"].startswith("1 column (CARAVAN)")
    assert rows["train"]["schema"].startswith("86 columns (MOSTYPE ... CARAVAN)")
    assert [c.name for c in meta["gt schema"].columns] == ["CARAVAN"]
    assert len(meta["test schema"].columns) == 85
    # The notebook-shaped dict is still the asset's value.
    assert set(result.output_for_node("dataframes")) == {"train", "test", "gt"}


def test_modelling_table_preview_shows_split_and_target_from_both_splits(graph_run):
    result, _ = graph_run
    meta = materialization_metadata(result, "modelling_table")
    preview = meta["preview"]
    names = [c.name for c in preview.schema.columns]
    assert names[:2] == ["split", "CARAVAN"] and len(names) <= 8
    assert {record.data["split"] for record in preview.records} == {"train", "test"}
    assert meta["dagster/row_count"] == 60
    schema = {c.name: c.description for c in meta["dagster/column_schema"].columns}
    assert schema["split"] and schema["CARAVAN"]


def test_listing_schema_is_described_and_its_preview_is_narrow(graph_run):
    result, _ = graph_run
    meta = materialization_metadata(result, "s3_listing")
    schema = meta["dagster/column_schema"].columns
    assert {c.name for c in schema} == set(LISTING_COLUMNS)
    assert all(c.description for c in schema)
    assert "bytes" in next(c.description for c in schema if c.name == "size")
    assert [c.name for c in meta["preview"].schema.columns] == LISTING_PREVIEW_COLUMNS


def test_dictionary_preview_shows_the_dashes_the_file_means(graph_run, s3, uci_dir):
    result, bucket = graph_run
    text = " ".join(str(record.data) for record in materialization_metadata(result, "dictionary_text")["preview"].records)
    assert "\u2013" in text  # "1 – 10" as in the dictionary (cp1252 0x96)
    assert "\x96" not in text and "\\x96" not in text
    # The S3 copy keeps the notebook's bytes (read as latin-1): the preview changes nothing there.
    body = s3.get_object(Bucket=bucket, Key="ins_dataset/raw/metadata/col_info.csv")["Body"].read()
    assert "\u2013".encode("cp1252").decode("latin-1").encode() in body


def test_definition_metadata_is_there_before_any_run():
    from s3_assets.defs import ASSETS

    metadata = {key: meta for a in ASSETS for key, meta in a.metadata_by_key.items()}
    assert metadata[AssetKey("modelling_table")]["expected_rows"] == 9822
    assert metadata[AssetKey("dataframes")]["expected_frames"].value["test"] == [4000, 85]
    assert metadata[AssetKey("train")]["expected_columns"] == 86
