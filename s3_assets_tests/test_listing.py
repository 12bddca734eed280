"""The listing table against the real server: complete past 1,000 keys, folder markers and odd
keys exactly as the server stores them, sub-folders, `aws s3 ls` rendering, CSV export."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from s3_assets.lib.errors import ConfigError
from s3_assets.lib.listing import LISTING_COLUMNS, list_objects, render_ls, subfolders
from s3_assets_tests.conftest import materialization_metadata

ODD_KEYS = [
    "ins_dataset/with space/file one.csv",
    "ins_dataset/unicode/donn\u00e9es_\u00fc\u00df.csv",
    "ins_dataset/plus+sign/a+b.csv",
    "ins_dataset/percent%20/100%.csv",
]


def put_many(s3, bucket: str, keys: list[str], body: bytes = b"x") -> None:
    """Put the keys; small sets one by one. SeaweedFS 4.48 can silently lose the object `a`
    when `a` and `a/x` are PUT at the same moment (its filer races on file vs directory), and
    the small sets here hold such pairs (`ins_dataset2` and `ins_dataset2/x.csv`)."""
    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=body if not key.endswith("/") else b"")

    if len(keys) < 100:
        for key in keys:
            put(key)
        return
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, keys))


def test_lists_all_2500_objects_with_markers_and_odd_keys(s3, bucket):
    keys = [f"ins_dataset/bulk/part-{i:05d}.csv" for i in range(2490)]
    markers = ["ins_dataset/empty-folder/", "ins_dataset/bulk/"]
    siblings = ["ins_dataset_old/x.csv", "ins_dataset2/y.csv"]
    put_many(s3, bucket, keys + markers + ODD_KEYS + siblings)

    listing = list_objects(s3, bucket, "ins_dataset/")
    assert list(listing.columns) == LISTING_COLUMNS
    assert len(listing) == 2490 + 2 + len(ODD_KEYS)  # past the notebook's 1,000-key single call
    assert set(listing["key"]) == set(keys + markers + ODD_KEYS)  # siblings not included
    marker_rows = listing[listing["is_folder"]]
    assert set(marker_rows["key"]) == set(markers) and (marker_rows["size"] == 0).all()
    assert str(listing["last_modified"].dtype) == "datetime64[ns, UTC]" or listing["last_modified"].dt.tz is not None
    for key in ODD_KEYS:  # each listed key fetches the very object that was put
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"x"
    row = listing.set_index("key").loc["ins_dataset/unicode/donn\u00e9es_\u00fc\u00df.csv"]
    assert row["name"] == "donn\u00e9es_\u00fc\u00df.csv" and row["extension"] == "csv" and row["depth"] == 1
    assert row["uri"] == f"s3://{bucket}/ins_dataset/unicode/donn\u00e9es_\u00fc\u00df.csv"
    assert row["etag"] == "9dd4e461268c8034f5c8564e155c67a6"  # md5(b"x"), quotes stripped
    assert row["storage_class"] == "STANDARD"
    assert subfolders(listing, "ins_dataset/") == [
        "bulk/", "empty-folder/", "percent%20/", "plus+sign/", "unicode/", "with space/"]


def test_double_slash_keys_come_back_as_the_server_stores_them(s3, bucket):
    # SeaweedFS stores keys in a filer tree and folds '//' to '/'; the listing reports the key
    # the server holds, and that key reads the object back.
    s3.put_object(Bucket=bucket, Key="ins_dataset/a//b.csv", Body=b"data")
    listing = list_objects(s3, bucket, "ins_dataset/")
    [key] = listing["key"].tolist()
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"data"


def test_depth_name_extension_and_rendering(s3, bucket):
    put_many(s3, bucket, ["ins_dataset/raw/train.csv", "ins_dataset/raw/metadata/col_info.csv",
                          "ins_dataset/README", "ins_dataset/raw/"])
    listing = list_objects(s3, bucket, "ins_dataset/").set_index("key")
    assert listing.loc["ins_dataset/raw/train.csv", "depth"] == 1
    assert listing.loc["ins_dataset/raw/metadata/col_info.csv", "depth"] == 2
    assert listing.loc["ins_dataset/README", "extension"] == ""
    assert listing.loc["ins_dataset/raw/", "is_folder"]
    text = render_ls(listing.reset_index(), "ins_dataset/")
    assert "PRE raw/" in text and text.rstrip().endswith("README")


def test_listing_asset_metadata_and_csv_export(s3, bucket, make_location, run_graph, uci_dir, tmp_path, monkeypatch):
    from dagster import RunConfig

    from s3_assets.defs.analysis import assets as analysis

    monkeypatch.setattr(analysis, "EXPORTS_DIR", str(tmp_path / "exports"))  # local exports go there only
    location = make_location(bucket)
    run_graph(location, uci_dir)
    export = tmp_path / "exports" / "files.csv"
    from dagster import DagsterInstance, materialize

    from s3_assets.defs import ASSETS
    from s3_assets_tests.conftest import graph_resources

    result = materialize(
        ASSETS, selection=["s3_listing"], instance=DagsterInstance.ephemeral(),
        resources=graph_resources(location, uci_dir, tmp_path / "cache"),
        run_config=RunConfig({"s3_listing": {"config": {"export_csv": str(export)}}}),
    )
    meta = materialization_metadata(result, "s3_listing")
    assert meta["dagster/row_count"] == 4
    assert meta["total_bytes"] == sum(o["Size"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="ins_dataset/")["Contents"])
    assert meta["subfolders"] == "raw/"
    assert "PRE raw/" in meta["aws s3 ls"]
    exported = pd.read_csv(export)
    assert sorted(exported["key"]) == sorted(result.output_for_node("s3_listing")["key"])


def test_export_under_the_listed_prefix_is_refused(bucket, make_location):
    from s3_assets.defs.analysis.assets import export_listing

    location = make_location(bucket)
    listing = pd.DataFrame({"key": ["ins_dataset/a"]})
    with pytest.raises(ConfigError, match="S3 exports go only under"):
        export_listing(listing, f"s3://{bucket}/ins_dataset/files.csv", location)
    # The exports area is fine.
    target = f"s3://{bucket}/s3-assets-exports/files.csv"
    assert export_listing(listing, target, location) == target
    assert location.connect().head_object(Bucket=bucket, Key="s3-assets-exports/files.csv")["ContentLength"] > 0
