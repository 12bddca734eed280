"""Materialization metadata as a Dagster user reads it: standard keys (`dagster/uri`,
`dagster/row_count`) meaning what Dagster means by them, units in the names, previews that show
the columns people look for, and outside text shown as it is meant."""

from __future__ import annotations

import pytest
from dagster import AssetKey, DagsterInstance

from s3_assets.defs.metadata import LISTING_COLUMNS, LISTING_PREVIEW_COLUMNS
from s3_assets_tests.conftest import materialization_metadata


@pytest.fixture(scope="module")
def graph_home(tmp_path_factory):
    """The module's Dagster instance, on disk: a notebook reads stored values through it."""
    return tmp_path_factory.mktemp("dagster_home")


@pytest.fixture(scope="module")
def graph_run(s3_server, uci_dir, tmp_path_factory, graph_home):
    """One run of the whole graph on the generated UCI files (5822 train, 4000 test rows, as UCI publishes)."""
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
                         instance=DagsterInstance.local_temp(str(graph_home)))
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
        "train": (5822, 86), "test": (4000, 85), "gt": (4000, 1)}
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
    assert meta["dagster/row_count"] == 9822
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


# -- issue 22 §5: what a data scientist looks for -------------------------------------------------

def test_the_local_endpoint_is_shown_and_no_credential(graph_run, s3_server):
    from s3_assets.defs.resources import S3Connection

    result, _ = graph_run
    endpoint = S3Connection(target="local", local_dir=s3_server.local_dir).get_client().meta.endpoint_url
    secret = S3Connection(target="local", local_dir=s3_server.local_dir).storage_options()["secret"]
    for asset in ("train_csv", "gt_csv", "s3_listing"):
        assert materialization_metadata(result, asset)["s3_endpoint"] == endpoint.rstrip("/"), asset
    shown = " ".join(str(v.value) for e in result.get_asset_materialization_events()
                     for v in e.materialization.metadata.values())
    assert secret not in shown


def test_public_endpoint_drops_what_a_url_may_hide():
    from s3_assets.lib.text import shown_url as public_endpoint

    assert public_endpoint("https://user:pw@s3.example.com:9000/base?X-Amz-Signature=s#f") == \
        "https://s3.example.com:9000/base"
    assert public_endpoint("http://127.0.0.1:8333") == "http://127.0.0.1:8333"


def test_the_labelled_preview_names_the_codes(graph_run):
    result, _ = graph_run
    meta = materialization_metadata(result, "modelling_table")
    coded, labelled = meta["preview"].records, meta["preview_labelled"].records
    assert [c.name for c in meta["preview_labelled"].schema.columns] == [c.name for c in meta["preview"].schema.columns]
    for code_row, label_row in zip(coded, labelled, strict=True):
        assert label_row.data["MOSTYPE"] == f"Subtype {code_row.data['MOSTYPE']}, with comma"
        assert label_row.data["MOSHOOFD"] == f"Main type {code_row.data['MOSHOOFD']}"
        assert label_row.data["CARAVAN"] == code_row.data["CARAVAN"]  # no value table: the number


def test_the_caravan_rate_chart_counts_every_row_once(graph_run):
    import re

    result, _ = graph_run
    table = result.output_for_node("modelling_table")
    chart = materialization_metadata(result, "modelling_table")["caravan_rate_by_main_type"]
    rows = re.findall(r"^\| (\d+) Main type (\d+) \| ([\d,]+) / ([\d,]+) \| [\d.]+% [█·]+ \|$", chart, re.MULTILINE)
    counted = {int(code): (int(rows_.replace(",", "")), int(positives.replace(",", "")))
               for code, label, positives, rows_ in rows if code == label}
    expected = table.groupby("MOSHOOFD", observed=True)["CARAVAN"].agg(["size", lambda s: int((s == 1).sum())])
    assert counted == {int(k): (int(v.iloc[0]), int(v.iloc[1])) for k, v in expected.iterrows()}
    assert len(rows) == len(counted) and "█" * 10 in chart  # the highest rate has the longest bar


def test_the_chart_of_the_real_labels_is_drawn_on_the_page():
    """Ten main types with labels as long as the real ones stay under the size the UI draws
    inline (longer markdown becomes a "[Show Markdown]" button)."""
    import pandas as pd

    from s3_assets.defs.metadata import INLINE_MARKDOWN_CHARS, rate_chart

    labels = {code: "Retired and Religeous " + "x" * 3 for code in range(1, 11)}
    frame = pd.DataFrame({"MOSHOOFD": [c for c in range(1, 11) for _ in range(600)],
                          "CARAVAN": [i % 17 == 0 for i in range(6000)]}).astype("uint8")
    chart = str(rate_chart(frame, "MOSHOOFD", "CARAVAN", labels,
                           "CARAVAN (caravan policy) rate by customer main type, MOSHOOFD").value)
    assert chart.count("Religeous") == 10 and len(chart) < INLINE_MARKDOWN_CHARS


def test_text_from_the_dictionary_is_literal_in_the_chart():
    import re

    import pandas as pd

    from s3_assets.defs.metadata import md_text, rate_chart

    frame = pd.DataFrame({"K": [1, 1, 2], "CARAVAN": [1, 0, 0]})
    chart = str(rate_chart(frame, "K", "CARAVAN", {1: "a | b <img src=x>\n[l](javascript:x)", 2: "*x*"}, "t").value)
    assert "a \\| b" in chart and "\n[l]" not in chart and "\\[l\\]" in chart  # no cell ends, no line or link starts
    assert not re.search(r"(?<!\\)<", chart) and "\\*x\\*" in chart  # no HTML, no emphasis
    assert md_text("a|b") == "a\\|b"


def test_the_notebook_snippets_run_as_shown(graph_run, graph_home, s3_server, tmp_path):
    """Each "read_in_a_notebook" snippet, run as a notebook would (a fresh Python with the
    project's settings), reads the data the asset holds."""
    import os
    import subprocess
    import sys

    result, bucket = graph_run
    snippets = {asset: materialization_metadata(result, asset)["read_in_a_notebook"]
                for asset in ("train_csv", "gt_csv", "dataframes", "modelling_table")}
    code = []
    for asset, markdown in snippets.items():
        lines = markdown.splitlines()
        assert lines[0] == "```python" and lines[-1] == "```", markdown
        code += lines[1:-1]
        variable = {"train_csv": "frame", "gt_csv": "frame"}.get(asset, asset)
        code.append(f"print({asset!r}, repr(getattr({variable}, 'shape', None) or sorted({variable})))")
    env = {**os.environ, "S3_ASSETS_LOCAL_DIR": s3_server.local_dir, "S3_ASSETS_BUCKET": bucket,
           "DAGSTER_HOME": str(graph_home)}  # the instance that recorded the stored values
    done = subprocess.run([sys.executable, "-c", "\n".join(code)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == ["train_csv (5822, 86)", "gt_csv (4000, 1)",
                                        "dataframes ['gt', 'test', 'train']", "modelling_table (9822, 87)"]


def test_no_s3_uri_is_drawn_as_a_link(graph_run):
    """The UI draws a `path` as a link that only copies and a `url` as a link a browser cannot
    open for s3://; an S3 URI is text (the Storage section adds a copy button to `dagster/uri`)."""
    from dagster import PathMetadataValue, UrlMetadataValue

    result, _ = graph_run
    links = [(e.asset_key.to_user_string(), key) for e in result.get_asset_materialization_events()
             for key, value in e.materialization.metadata.items()
             if isinstance(value, (PathMetadataValue, UrlMetadataValue)) and str(value.value).startswith("s3://")]
    links += [(e.asset_key.to_user_string(), key) for e in result.get_asset_check_evaluations()
              for key, value in e.metadata.items()
              if isinstance(value, (PathMetadataValue, UrlMetadataValue)) and str(value.value).startswith("s3://")]
    assert not links
