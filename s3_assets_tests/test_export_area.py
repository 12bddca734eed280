"""S3 exports go only under one folder of each bucket, `s3-assets-exports/`, and no data or IO
prefix may overlap it (issue 19 §3, outside attack): an export can know only its own
configuration's prefixes, so one from `e2` to `s3://b/e1/train.csv` wrote into `e1`'s data
(`e1`'s `file_map` then failed on two `train` files), and a copy of an export, which carries
the export's mark, was overwritten wherever it lay. Local export names that name a folder, or
pass through a file, are refused by name (they raised a raw `FileExistsError`, or wrote a
file named like the folder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance, RunConfig, materialize

from s3_assets.defs import ASSETS
from s3_assets.defs.analysis.assets import export_listing
from s3_assets.lib.errors import ConfigError
from s3_assets.lib.exports import EXPORTS_AREA
from s3_assets.settings import build_resources
from s3_assets_tests.conftest import graph_resources
from s3_assets_tests.test_cleanup_safety import failure_of
from s3_assets_tests.test_listing_export import _body, exports, listing_of, read_back  # noqa: F401 - the fixture

AREA = EXPORTS_AREA  # "s3-assets-exports/"


def _objects(s3, bucket: str) -> dict[str, bytes]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {key: _body(s3, bucket, key) for key in keys}


# -- S3: only under the area ---------------------------------------------------------------------

OUTSIDE = [
    "e1/train.csv",                              # another configuration's prefix: its file_map sees two `train`s
    "e1/raw/v0179-deadbeef/x.csv",               # a stored-value-like folder in it: blocks its cleanup
    "listing.csv",                               # the bucket root
    "reports/listing.csv",                       # any other folder
    "s3-assets-exports",                         # the area's name as an object, not a key in it
    "s3-assets-exports-old/x.csv", "s3-assets-exportsx.csv",   # beside the area
    "e1/s3-assets-exports/x.csv",                # an area-named folder inside a prefix
    "e1\\s3-assets-exports\\x.csv", "//e1//s3-assets-exports/x.csv",  # the same, as the server stores them
    "S3-Assets-Exports/x.csv",                   # not the area as spelled (another key on AWS)
]


@pytest.mark.parametrize("key", OUTSIDE)
def test_an_s3_export_outside_the_area_is_refused_by_name(s3, bucket, make_location, key):
    s3.put_object(Bucket=bucket, Key="e1/raw/train.csv", Body=b"e1's copy")
    before = _objects(s3, bucket)
    with pytest.raises(ConfigError, match=f"S3 exports go only under s3://{bucket}/{AREA}") as refused:
        export_listing(listing_of(["e2/a"]), f"s3://{bucket}/{key}", make_location(bucket, prefix="e2"))
    assert "nothing was written" in str(refused.value)
    assert _objects(s3, bucket) == before


def test_another_buckets_keys_outside_its_area_are_refused(s3, bucket, make_location):
    other = f"o-{bucket}"
    s3.create_bucket(Bucket=other)
    for key in ("ins_dataset/train.csv", "e1/x.csv", "x.csv"):
        with pytest.raises(ConfigError, match=f"S3 exports go only under s3://{other}/{AREA}"):
            export_listing(listing_of(["e2/a"]), f"s3://{other}/{key}", make_location(bucket, prefix="e2"))
    assert _objects(s3, other) == {}
    target = f"s3://{other}/{AREA}e2.csv"  # its area is the place
    assert export_listing(listing_of(["e2/a"]), target, make_location(bucket, prefix="e2")) == target


@pytest.mark.parametrize("inside, outside", [
    ("s3-assets-exports\\listing.csv", "e1\\s3-assets-exports\\listing.csv"),
    ("//s3-assets-exports//listing.csv", "//e1//s3-assets-exports//listing.csv"),
    ("/s3-assets-exports\\\\sub//listing.csv", "/e1\\\\s3-assets-exports//sub/listing.csv"),
])
def test_the_area_is_judged_on_the_key_the_server_stores(s3, bucket, make_location, inside, outside):
    location = make_location(bucket, prefix="e2")
    with pytest.raises(ConfigError, match="S3 exports go only under"):
        export_listing(listing_of(["e2/a"]), f"s3://{bucket}/{outside}", location)
    written = export_listing(listing_of(["e2/a"]), f"s3://{bucket}/{inside}", location)
    stored = list(_objects(s3, bucket))
    assert len(stored) == 1 and stored[0].startswith(AREA) and written == f"s3://{bucket}/{stored[0]}"


def test_the_asset_refuses_an_export_into_another_configurations_prefix(s3, bucket, make_location, uci_dir, tmp_path):
    """The attack as run: `e2`'s listing exported into `e1`, whose data lies beside it."""
    s3.put_object(Bucket=bucket, Key="e1/raw/train.csv", Body=b"e1's copy")
    s3.put_object(Bucket=bucket, Key="e2/raw/train.csv", Body=b"e2's copy")
    result = materialize(
        ASSETS, selection=["s3_listing"], instance=DagsterInstance.ephemeral(), raise_on_error=False,
        resources=graph_resources(make_location(bucket, prefix="e2"), uci_dir, tmp_path / "cache"),
        run_config=RunConfig({"s3_listing": {"config": {"export_csv": f"s3://{bucket}/e1/train.csv"}}}),
    )
    assert not result.success
    assert "S3 exports go only under" in failure_of(result)
    assert set(_objects(s3, bucket)) == {"e1/raw/train.csv", "e2/raw/train.csv"}


# -- a copy of an export carries its mark; outside the area it is never overwritten ------------

@pytest.mark.parametrize("copy_to", ["e1/raw/train.csv", "listing-copy.csv"])
def test_a_marked_copy_of_an_export_outside_the_area_is_never_overwritten(s3, bucket, make_location, copy_to):
    location = make_location(bucket, prefix="e2")
    export_listing(listing_of(["e2/a"]), f"s3://{bucket}/{AREA}mine.csv", location)
    s3.copy_object(Bucket=bucket, Key=copy_to, CopySource={"Bucket": bucket, "Key": f"{AREA}mine.csv"})
    assert "s3-assets-export" in s3.head_object(Bucket=bucket, Key=copy_to)["Metadata"]  # the mark came along
    copied = _body(s3, bucket, copy_to)
    with pytest.raises(ConfigError, match="S3 exports go only under"):
        export_listing(listing_of(["e2/b"]), f"s3://{bucket}/{copy_to}", location)
    assert _body(s3, bucket, copy_to) == copied


# -- settings: no prefix in or over the area ------------------------------------------------------

@pytest.mark.parametrize("variable, value", [
    ("S3_ASSETS_PREFIX", "s3-assets-exports"), ("S3_ASSETS_PREFIX", "s3-assets-exports/e1"),
    ("S3_ASSETS_PREFIX", "/S3-Assets-Exports/"), ("S3_ASSETS_PREFIX", "s3-assets-exports/e1/raw"),
    ("S3_ASSETS_IO_PREFIX", "s3-assets-exports"), ("S3_ASSETS_IO_PREFIX", "s3-assets-exports/io"),
    ("S3_ASSETS_IO_PREFIX", "S3-ASSETS-EXPORTS/io"),
])
def test_a_prefix_in_the_area_is_refused_when_the_settings_load(variable, value):
    with pytest.raises(ConfigError, match=rf"{variable}=.*is, contains or lies in '{AREA}'.*S3 exports"):
        build_resources({variable: value})


# -- local names that name a folder or pass through a file -------------------------------------

@pytest.mark.parametrize("target, why", [
    ("first.csv/inner.csv", "first.csv is a file, not a folder"),
    ("first.csv/deeper/inner.csv", "first.csv is a file, not a folder"),
    ("{exports}/first.csv/inner.csv", "first.csv is a file, not a folder"),
    ("newdir/", "names a folder"), ("newdir\\", "names a folder"), ("sub/.", "names a folder"),
    ("sub", "sub is a folder"), ("sub/", "names a folder"), ("{exports}/sub", "sub is a folder"),
    ("sub/..", "names a folder"),
    # the exporter's own files (outside attack: a name like its temporary file became the manifest)
    (".written.json", "the exports folder's own"), ("..written.json.123.tmp", "the exports folder's own"),
    ("sub/.hidden.csv", "the exports folder's own"),
    ("/".join(["d"] * 1500) + "/x.csv", "more than 64 folders deep"),  # raised a raw RecursionError
])
def test_local_names_of_folders_or_through_files_are_refused_by_name(exports, make_location, bucket,  # noqa: F811
                                                                     target, why):
    location = make_location(bucket)
    export_listing(listing_of(["ins_dataset/a"]), "first.csv", location)
    (exports / "sub").mkdir()
    before = {p: p.read_bytes() for p in exports.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=why) as refused:
        export_listing(listing_of(["ins_dataset/b"]), target.format(exports=exports), location)
    assert "export_csv" in str(refused.value)
    assert {p: p.read_bytes() for p in exports.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in exports.iterdir()) == [".written.json", "first.csv", "sub"]
    assert read_back(exports / "first.csv") == ["ins_dataset/a"]
    assert not any((exports / "sub").iterdir())
    # A file in the existing folder is still written.
    written = export_listing(listing_of(["ins_dataset/c"]), "sub/listing.csv", location)
    assert Path(written) == exports.resolve() / "sub" / "listing.csv" and read_back(Path(written)) == ["ins_dataset/c"]
