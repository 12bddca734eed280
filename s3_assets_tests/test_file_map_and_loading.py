"""The file map's rules and the loaded DataFrame dict: concurrency-safe, correct parsing,
errors that name the key, nothing half-loaded."""

from __future__ import annotations

import pandas as pd
import pytest

from s3_assets.lib.file_map import DuplicateNameError, FileMapRules, build_file_map
from s3_assets.lib.listing import frame_from_rows, list_objects
from s3_assets.lib.loading import LoadError, load_frames


def listing_of(keys: list[str], root: str = "ins_dataset/") -> pd.DataFrame:
    sizes = [0 if k.endswith("/") else 10 for k in keys]
    now = [pd.Timestamp("2026-01-01", tz="UTC")] * len(keys)
    return frame_from_rows("b", root, keys, sizes, now, ["e"] * len(keys), ["STANDARD"] * len(keys))


NOTEBOOK_LAYOUT = [
    "ins_dataset/raw/", "ins_dataset/raw/train.csv", "ins_dataset/raw/test.csv", "ins_dataset/raw/gt.csv",
    "ins_dataset/raw/metadata/", "ins_dataset/raw/metadata/col_info.csv",
]


def test_default_rules_give_the_notebooks_three_files():
    assert build_file_map(listing_of(NOTEBOOK_LAYOUT), FileMapRules()) == {
        "train": "ins_dataset/raw/train.csv", "test": "ins_dataset/raw/test.csv", "gt": "ins_dataset/raw/gt.csv"}


def test_depth_and_extension_rules():
    keys = NOTEBOOK_LAYOUT + ["ins_dataset/raw/notes.txt", "ins_dataset/raw/model.tar.gz", "ins_dataset/top.CSV"]
    deeper = build_file_map(listing_of(keys), FileMapRules(max_depth=2))
    assert deeper["col_info"] == "ins_dataset/raw/metadata/col_info.csv"
    assert build_file_map(listing_of(keys), FileMapRules(max_depth=0)) == {"top": "ins_dataset/top.CSV"}
    texts = build_file_map(listing_of(keys), FileMapRules(extensions=["txt", ".gz"]))
    assert texts == {"notes": "ins_dataset/raw/notes.txt", "model.tar": "ins_dataset/raw/model.tar.gz"}


def test_folder_markers_are_never_files():
    assert build_file_map(listing_of(["ins_dataset/x.csv/"]), FileMapRules()) == {}


def test_duplicate_names_name_both_keys():
    keys = ["ins_dataset/a/train.csv", "ins_dataset/b/train.csv"]
    with pytest.raises(DuplicateNameError, match="'ins_dataset/a/train.csv' and 'ins_dataset/b/train.csv'"):
        build_file_map(listing_of(keys), FileMapRules())


def test_file_map_on_the_real_server(s3, bucket):
    for key in ["ins_dataset/raw/train.csv", "ins_dataset/raw/metadata/col_info.csv", "ins_dataset_old/raw/x.csv"]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"a\n1\n")
    assert build_file_map(list_objects(s3, bucket, "ins_dataset/"), FileMapRules()) == {
        "train": "ins_dataset/raw/train.csv"}


def test_loads_csv_with_commas_and_compact_types(s3, bucket):
    frame = pd.DataFrame({"0": range(300), "1": [-5] * 300, "2": [70000] * 300})
    s3.put_object(Bucket=bucket, Key="p/a.csv", Body=frame.to_csv(index=False).encode())
    s3.put_object(Bucket=bucket, Key="p/b.csv", Body=b"x,y\n1,2\n")
    progress: list[str] = []
    frames = load_frames(s3, bucket, {"a": "p/a.csv", "b": "p/b.csv"}, {}, progress=progress.append)
    assert frames["a"].shape == (300, 3)  # not one text column, as read_table gave
    assert [str(t) for t in frames["a"].dtypes] == ["uint16", "int8", "uint32"]
    assert frames["b"].to_dict("list") == {"x": [1], "y": [2]}
    assert progress[-1].startswith("2/2 files")


def test_broken_row_fails_naming_the_key(s3, bucket):
    s3.put_object(Bucket=bucket, Key="p/good.csv", Body=b"a,b\n1,2\n")
    s3.put_object(Bucket=bucket, Key="p/broken.csv", Body=b"a,b\n1,2\n3,4,5\n")
    with pytest.raises(LoadError, match="'p/broken.csv' is not a valid CSV.*Expected 2 columns, got 3"):
        load_frames(s3, bucket, {"good": "p/good.csv", "broken": "p/broken.csv"}, {})


def test_missing_object_names_the_key(s3, bucket):
    with pytest.raises(LoadError, match=f"s3://{bucket}/p/gone.csv.*NoSuchKey"):
        load_frames(s3, bucket, {"gone": "p/gone.csv"}, {})


def test_file_over_the_size_limit_is_refused_before_download(s3, bucket):
    with pytest.raises(LoadError, match="'p/big.csv' is 5,000 bytes, over the in-memory limit of 1,000"):
        load_frames(s3, bucket, {"big": "p/big.csv"}, {"p/big.csv": 5000}, max_bytes=1000)
