"""A notebook reads the project's copies with pandas and s3fs, as the original notebook did:
`pd.read_csv("s3://...", storage_options=...)` against the configured target."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import DagsterInstance

from s3_assets.settings import build_resources


def test_pandas_reads_a_copy_through_s3fs_with_the_storage_options(s3_server, s3, bucket):
    body = b"ORIGIN,CARAVAN\ntrain,0\ntrain,1\n"
    s3.put_object(Bucket=bucket, Key="ins_dataset/raw/train.csv", Body=body)
    s3_prefix = build_resources({"S3_ASSETS_LOCAL_DIR": s3_server.local_dir, "S3_ASSETS_BUCKET": bucket})["s3_prefix"]
    uri = s3_prefix.uri(s3_prefix.key("raw/train.csv"))
    assert uri == f"s3://{bucket}/ins_dataset/raw/train.csv"
    frame = pd.read_csv(uri, storage_options=s3_prefix.s3.storage_options())
    assert frame.to_csv(index=False).encode() == body


def test_the_typed_frames_load_in_a_notebook_through_the_io_manager(s3_server, bucket, make_location, run_graph, uci_dir):
    """README's "See your data": after a run, `defs.load_asset_value` gives the stored
    `modelling_table` and `dataframes` back, typed as the run left them."""
    from s3_assets.definitions import build_definitions

    instance = DagsterInstance.ephemeral()
    result = run_graph(make_location(bucket), uci_dir, instance=instance)
    defs = build_definitions({"S3_ASSETS_LOCAL_DIR": s3_server.local_dir, "S3_ASSETS_BUCKET": bucket})
    table = defs.load_asset_value("modelling_table", instance=instance)
    pd.testing.assert_frame_equal(table, result.output_for_node("modelling_table"))
    assert {"split", "CARAVAN", "MOSTYPE"} <= set(table.columns) and table["MOSTYPE"].dtype == "uint8"
    frames = defs.load_asset_value("dataframes", instance=instance)
    assert sorted(frames) == ["gt", "test", "train"]
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(frame, result.output_for_node("dataframes")[name])


def test_a_notebook_without_dagster_home_reads_through_the_projects_instance(
        s3_server, bucket, make_location, run_graph, uci_dir, tmp_path, monkeypatch, capfd):
    """README's `defs.load_asset_value("modelling_table")` in a notebook that has no DAGSTER_HOME:
    the values are read through the checkout's own instance (`.dagster_home`), where README's
    command 1 recorded them, and nothing is printed; with no such instance the error says what
    to set."""
    from s3_assets.definitions import build_definitions
    from s3_assets.defs import io_manager
    from s3_assets.lib.stored_values import StoredValueError

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as instance:
        result = run_graph(make_location(bucket), uci_dir, instance=instance)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setattr(io_manager, "PROJECT_INSTANCE", home)
    monkeypatch.setattr(io_manager, "_project_instance", None)
    defs = build_definitions({"S3_ASSETS_LOCAL_DIR": s3_server.local_dir, "S3_ASSETS_BUCKET": bucket})
    capfd.readouterr()
    pd.testing.assert_frame_equal(defs.load_asset_value("modelling_table"), result.output_for_node("modelling_table"))
    printed = capfd.readouterr()
    assert "DEBUG" not in printed.out + printed.err  # a notebook cell shows the frame, not Dagster's log
    monkeypatch.setattr(io_manager, "PROJECT_INSTANCE", tmp_path / "nowhere")
    monkeypatch.setattr(io_manager, "_project_instance", None)
    with pytest.raises(StoredValueError, match="set DAGSTER_HOME"):
        defs.load_asset_value("modelling_table")
