"""The listing export writes only where it should (issue 19 §3): local files only under the
project's exports folder, never over a file it did not write nor through a symlink; keys
encoded so that none starts a line, and read back exactly; S3 targets compared as the server
stores them, never over the data prefix's copies or the stored outputs."""

from __future__ import annotations

import csv
import io
import threading
from pathlib import Path
from urllib.parse import unquote

import pandas as pd
import pytest
from botocore.exceptions import ClientError
from dagster import DagsterInstance, RunConfig, materialize

from s3_assets.defs import ASSETS
from s3_assets.defs.analysis import assets as analysis
from s3_assets.defs.analysis.assets import export_listing
from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.errors import ConfigError
from s3_assets.lib.exports import server_key
from s3_assets.lib.listing import list_objects
from s3_assets.lib.server_keys import renamed_by_servers
from s3_assets_tests.conftest import graph_resources
from s3_assets_tests.fault_proxy import FaultProxy, carries_condition, refuse_conditional

ATTACK_KEY = "ins_dataset/x\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIattacker evil@host\n"
HOSTILE_KEYS = [ATTACK_KEY, "ins_dataset/a\rb.csv", "ins_dataset/c\u2028d", "ins_dataset/e\x85f",
                "ins_dataset/100%25 \"quoted\", comma.csv", "ins_dataset/tab\there", "ins_dataset/plain.csv",
                "ins_dataset/\x1b[31mred"]


@pytest.fixture
def exports(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "project" / ".s3-assets" / "exports"
    monkeypatch.setattr(analysis, "EXPORTS_DIR", str(folder))
    return folder


def listing_of(keys: list[str], bucket: str = "b") -> pd.DataFrame:
    return pd.DataFrame({"key": keys, "size": [1] * len(keys), "name": [k.rsplit("/", 1)[-1] for k in keys],
                         "uri": [f"s3://{bucket}/{k}" for k in keys]})


def read_back(path: Path) -> list[str]:
    rows = list(csv.DictReader(io.StringIO(path.read_text(), newline="")))
    return [unquote(r["key"]) if r["text_encoding"] == "url" else r["key"] for r in rows]


def test_keys_never_start_a_line_and_read_back_exactly(exports, make_location, bucket):
    written = Path(export_listing(listing_of(HOSTILE_KEYS), "files.csv", make_location(bucket)))
    assert written == exports.resolve() / "files.csv"
    lines = written.read_bytes().split(b"\n")
    assert all(line == b"" or line.startswith(b'"') for line in lines)  # every line is a row, begun by its key
    assert not any(line.lstrip(b'"').startswith(b"ssh-ed25519") for line in lines)
    text = written.read_text()
    for char in "\r\x1b\u2028\x85":
        assert char not in text
    assert len(text.splitlines()) == len(HOSTILE_KEYS) + 1  # even str.splitlines (NEL, U+2028) sees one per row
    assert read_back(written) == HOSTILE_KEYS  # a CSV reader and unquote give every key back
    frame = pd.read_csv(written, keep_default_na=False)
    assert frame.loc[frame["key"] == "ins_dataset/plain.csv", "text_encoding"].tolist() == [""]


@pytest.mark.parametrize("target", [
    "~/.ssh/authorized_keys", "/etc/cron.d/x", "../outside.csv", "sub/../../outside.csv", "{tmp}/loose.csv",
    "file:///tmp/x.csv", ".written.json",
])
def test_local_targets_outside_the_exports_folder_are_refused(exports, make_location, bucket, tmp_path, target):
    target = target.format(tmp=tmp_path)
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="export_csv"):
        export_listing(listing_of([ATTACK_KEY]), target, make_location(bucket))
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "loose.csv").exists() and not (exports.parent / "outside.csv").exists()


def test_never_over_a_file_it_did_not_write_nor_through_a_symlink(exports, make_location, bucket, tmp_path):
    location = make_location(bucket)
    exports.mkdir(parents=True)
    victim = tmp_path / "authorized_keys"
    victim.write_text("precious\n")
    (exports / "link.csv").symlink_to(victim)
    (exports / "linked-folder").symlink_to(tmp_path, target_is_directory=True)
    (exports / "theirs.csv").write_text("someone's file\n")
    for target, why in (("link.csv", "symlink"), ("linked-folder/authorized_keys", "local exports go to"),
                        ("theirs.csv", "not an export the project wrote")):
        with pytest.raises(ConfigError, match=why):
            export_listing(listing_of(["ins_dataset/a"]), target, location)
    assert victim.read_text() == "precious\n" and (exports / "theirs.csv").read_text() == "someone's file\n"
    # Its own export is replaced by the next one; once someone changes it, it is theirs.
    export_listing(listing_of(["ins_dataset/a"]), "mine.csv", location)
    export_listing(listing_of(["ins_dataset/b"]), str(exports / "mine.csv"), location)
    assert read_back(exports / "mine.csv") == ["ins_dataset/b"]
    (exports / "mine.csv").write_text("edited by hand\n")
    with pytest.raises(ConfigError, match="not an export the project wrote"):
        export_listing(listing_of(["ins_dataset/c"]), "mine.csv", location)
    assert (exports / "mine.csv").read_text() == "edited by hand\n"


SPELLINGS = ["{p}\\raw\\train.csv", "/{p}/raw/gt.csv", "{p}//raw/test.csv", "{p}\\\\raw//\\test.csv",
             "//{p}\\raw/dictionary.txt"]
DOT_SPELLINGS = ["x/../{p}/raw/train.csv", "./{p}/./raw/train.csv", "{p}/raw/../raw/train.csv"]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_server_key_is_what_the_server_stores(s3, bucket, spelling):
    """The guards' premise (`lib.server_keys`, used by exports, lock notes, file maps and the
    prefixes' validation): each spelling is one SeaweedFS stores under another name, the name
    `server_key` gives, which it stores as written."""
    raw = spelling.format(p="norm")
    s3.put_object(Bucket=bucket, Key=raw, Body=b"x")
    stored = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert stored == [server_key(raw)]
    assert renamed_by_servers(raw) is not None and renamed_by_servers(stored[0]) is None


@pytest.mark.parametrize("spelling", DOT_SPELLINGS)
def test_dot_segments_are_refused_as_the_server_refuses_them(s3, bucket, make_location, spelling):
    raw = spelling.format(p="ins_dataset")
    with pytest.raises(ClientError, match="InvalidRequest"):
        s3.put_object(Bucket=bucket, Key=raw, Body=b"x")
    assert "'.' or '..' segment" in (renamed_by_servers(raw) or "")
    with pytest.raises(ConfigError, match="'.' or '..' segment"):
        export_listing(listing_of(["ins_dataset/a"]), f"s3://{bucket}/{raw}", make_location(bucket))
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


@pytest.mark.parametrize("spelling", [*SPELLINGS, "dagster-io/ins_dataset/train", "dagster-io\\ins_dataset\\file_map",
                                      "/dagster-io//other/x.csv", "ins_dataset", "\\\\dagster-io",
                                      ".s3-assets-locks/v1/run.120.x.0123456789abcdef.@", ".s3-assets-locks\\x",
                                      "INS_DATASET/raw/train.csv", ".S3-Assets-Locks/x", "Dagster-IO/ins_dataset/x"])
def test_s3_targets_over_the_copies_or_the_outputs_are_refused(s3, bucket, make_location, spelling):
    location = make_location(bucket)
    s3.put_object(Bucket=bucket, Key="ins_dataset/raw/train.csv", Body=b"the copy")
    s3.put_object(Bucket=bucket, Key="dagster-io/ins_dataset/train", Body=b"a stored output")
    target = f"s3://{bucket}/{spelling.format(p='ins_dataset')}"
    with pytest.raises(ConfigError, match="as the server stores it\\): S3 exports go only under"):
        export_listing(listing_of(["ins_dataset/raw/train.csv"]), target, location)
    objects = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert objects == {"ins_dataset/raw/train.csv": 8, "dagster-io/ins_dataset/train": 15}


@pytest.mark.parametrize("target, why", [
    ("s3://{b}/../../etc", "'..' segment"), ("s3://{b}/exports/", "names a folder"),
    ("s3://{b}/exports\\", "names a folder"), ("s3://{b}/", "names a folder"), ("s3://{b}/a\nb.csv", "control character"),
    ("s3://Not_A_Bucket/x.csv", "invalid bucket name"), ("S3://{b}/x.csv", "write S3 targets as s3://bucket/"),
])
def test_malformed_s3_targets_are_refused_naming_why(s3, bucket, make_location, target, why):
    with pytest.raises(ConfigError, match=why):
        export_listing(listing_of(["ins_dataset/a"]), target.format(b=bucket), make_location(bucket))
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_s3_export_beside_the_prefix_goes_where_the_server_puts_it(s3, bucket, make_location):
    location = make_location(bucket)
    written = export_listing(listing_of(HOSTILE_KEYS), f"s3://{bucket}/s3-assets-exports\\\\listing.csv", location)
    assert written == f"s3://{bucket}/s3-assets-exports/listing.csv"
    body = s3.get_object(Bucket=bucket, Key="s3-assets-exports/listing.csv")["Body"].read().decode()
    rows = list(csv.DictReader(io.StringIO(body, newline="")))
    assert [unquote(r["key"]) if r["text_encoding"] == "url" else r["key"] for r in rows] == HOSTILE_KEYS


def test_the_asset_refuses_the_issues_export_and_writes_nothing(s3, bucket, make_location, uci_dir, tmp_path, exports):
    location = make_location(bucket)
    s3.put_object(Bucket=bucket, Key=ATTACK_KEY, Body=b"x")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    keys = home / ".ssh" / "authorized_keys"
    keys.write_text("ssh-ed25519 AAAAmine me@host\n")
    result = materialize(
        ASSETS, selection=["s3_listing"], instance=DagsterInstance.ephemeral(), raise_on_error=False,
        resources=graph_resources(location, uci_dir, tmp_path / "cache"),
        run_config=RunConfig({"s3_listing": {"config": {"export_csv": str(keys)}}}),
    )
    assert not result.success
    assert keys.read_text() == "ssh-ed25519 AAAAmine me@host\n"
    assert list_objects(s3, bucket, "ins_dataset/")["key"].tolist() == [ATTACK_KEY]
    ok = materialize(
        ASSETS, selection=["s3_listing"], instance=DagsterInstance.ephemeral(),
        resources=graph_resources(location, uci_dir, tmp_path / "cache"),
        run_config=RunConfig({"s3_listing": {"config": {"export_csv": "listing.csv"}}}),
    )
    assert ok.success and read_back(exports / "listing.csv") == [ATTACK_KEY]
    assert not [line for line in (exports / "listing.csv").read_text().split("\n") if line.startswith("ssh-")]



# -- S3 exports never replace an object the project did not write (attack 1540 item 1) ----------

def _body(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.mark.parametrize("victim", ["same bucket, another prefix's copy", "another bucket"])
def test_an_s3_export_never_replaces_an_object_it_did_not_write(s3, bucket, make_location, victim):
    location = make_location(bucket, prefix="e2")
    other = bucket
    if victim == "another bucket":
        other = f"o-{bucket}"
        s3.create_bucket(Bucket=other)
    key = "e1/raw/train.csv" if other == bucket else "ins_dataset/raw/train.csv"
    s3.put_object(Bucket=other, Key=key, Body=b"their data\n" * 100)
    with pytest.raises(ConfigError, match=r"e1/raw/train\.csv|ins_dataset/raw/train\.csv") as refused:
        export_listing(listing_of(["e2/a"]), f"s3://{other}/{key}", location)
    assert "S3 exports go only under" in str(refused.value)
    assert _body(s3, other, key) == b"their data\n" * 100
    # A new key is written, marked; the next export replaces its own, unchanged export.
    mine = f"s3://{other}/s3-assets-exports/listing.csv"
    assert export_listing(listing_of(["e2/a"]), mine, location) == mine
    export_listing(listing_of(["e2/b"]), mine, location)
    assert b"e2/b" in _body(s3, other, "s3-assets-exports/listing.csv")
    # Once someone else writes there (an ordinary PUT, or one that copies the mark onto other
    # bytes), it is theirs.
    mark = s3.head_object(Bucket=other, Key="s3-assets-exports/listing.csv")["Metadata"]
    for theirs in ({}, {"s3-assets-export": mark["s3-assets-export"]}):
        s3.put_object(Bucket=other, Key="s3-assets-exports/listing.csv", Body=b"edited\n", Metadata=theirs)
        with pytest.raises(ConfigError, match="not an export the project wrote|changed since"):
            export_listing(listing_of(["e2/c"]), mine, location)
        assert _body(s3, other, "s3-assets-exports/listing.csv") == b"edited\n"


def test_a_write_between_the_check_and_the_put_is_not_overwritten(s3_server, s3, bucket):
    """The conditional PUT closes the moment between HEAD and PUT: a writer that gets there
    first keeps its object (new key: If-None-Match; own export: If-Match)."""
    from s3_assets_tests.test_cleanup_safety import custom

    for key, first in (("s3-assets-exports/race/new.csv", None), ("s3-assets-exports/race/mine.csv", b"an export")):
        racing = threading.Event()

        def on_request(method: str, path: str, key: str = key, racing: threading.Event = racing) -> None:
            if method == "PUT" and path.split("?")[0].endswith(key) and not racing.is_set():
                racing.set()  # someone else writes just before the export's PUT reaches the server
                s3.put_object(Bucket=bucket, Key=key, Body=b"raced in")

        with FaultProxy(s3_server.state.ports.s3, on_request=on_request) as proxy:
            location = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket, prefix="e2")
            if first is not None:
                racing.set()
                export_listing(listing_of(["e2/a"]), f"s3://{bucket}/{key}", location)
                racing.clear()
            with pytest.raises(ConfigError, match="changed between the check and the write"):
                export_listing(listing_of(["e2/b"]), f"s3://{bucket}/{key}", location)
        assert racing.is_set() and _body(s3, bucket, key) == b"raced in"
        puts = [h for m, p, h in proxy.requests if m == "PUT"]
        assert any(carries_condition(h) for h in puts)


def test_a_server_without_conditional_writes_gets_the_same_rule(s3_server, s3, bucket):
    """A server answering 501 NotImplemented to If-None-Match/If-Match: the export is written
    without the condition after the same HEAD; a foreign object is still never replaced."""
    from s3_assets_tests.test_cleanup_safety import custom

    s3.put_object(Bucket=bucket, Key="s3-assets-exports/theirs.csv", Body=b"their data")
    with FaultProxy(s3_server.state.ports.s3, answer=refuse_conditional) as proxy:
        location = S3Prefix(s3=custom(proxy.url, s3_server), bucket=bucket, prefix="e2")
        target = f"s3://{bucket}/s3-assets-exports/x.csv"
        export_listing(listing_of(["e2/a"]), target, location)
        export_listing(listing_of(["e2/b"]), target, location)
        with pytest.raises(ConfigError, match="not an export the project wrote"):
            export_listing(listing_of(["e2/c"]), f"s3://{bucket}/s3-assets-exports/theirs.csv", location)
    assert (b"e2/b" in _body(s3, bucket, "s3-assets-exports/x.csv")
            and _body(s3, bucket, "s3-assets-exports/theirs.csv") == b"their data")
    puts = [h for m, p, h in proxy.requests if m == "PUT" and "/s3-assets-exports/x.csv" in p]
    assert [carries_condition(h) for h in puts] == [True, False, True, False]  # refused, then plain


@pytest.mark.parametrize("spelling", ["dagster-io/e1/train/x.csv", "Dagster-IO\\e1\\x.csv",
                                      ".s3-assets-locks/v1/run.120.x.0123456789abcdef.@"])
def test_outputs_and_notes_of_every_configuration_are_guarded_in_any_bucket(s3, bucket, make_location, spelling):
    location = make_location(bucket, prefix="e2", io_prefix="io2")
    other = f"o-{bucket}"
    s3.create_bucket(Bucket=other)
    for where in (bucket, other):
        with pytest.raises(ConfigError, match="S3 exports go only under"):
            export_listing(listing_of(["e2/a"]), f"s3://{where}/{spelling}", location)
        assert s3.list_objects_v2(Bucket=where).get("KeyCount") == 0


# -- spreadsheet formulas (attack 1540 item 11) ------------------------------------------------

FORMULA_KEYS = ["=cmd/raw/a.csv", "e2/+HYPERLINK(\"http://x\",\"y\")", "e2/@SUM(1+1)*cmd.csv", "e2/-2+3",
                "e2/\tleading-tab", "e2/\rcr", "-lead", "@at", "+plus", "e2/ok=fine.csv", "e2/%3D.csv"]


def test_no_exported_field_starts_a_formula_and_keys_read_back(exports, make_location, bucket):
    written = Path(export_listing(listing_of(FORMULA_KEYS), "formulas.csv", make_location(bucket)))
    rows = list(csv.DictReader(io.StringIO(written.read_text(), newline="")))
    for row in rows:
        for column, value in row.items():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), (column, value)
    assert read_back(written) == FORMULA_KEYS
    by_key = {unquote(r["key"]): r for r in rows}
    assert by_key["e2/ok=fine.csv"]["text_encoding"] == ""  # only a leading character counts
    assert by_key["e2/@SUM(1+1)*cmd.csv"]["name"] == "%40SUM(1+1)*cmd.csv"


# -- local names no file system takes (attack 1540 item 13) ------------------------------------

@pytest.mark.parametrize("target, why", [
    ("a\x00b.csv", "NUL byte"), ("x" * 300 + ".csv", "longer than 200 bytes"),
    ("sub/" + "y" * 256, "longer than 200 bytes"), ("/".join(["d" * 100] * 45), "longer than 4,096 bytes"),
    ("bad\ud800.csv", "not valid text"), ("\udcff.csv", "not valid text"), ("s3://b/k\udcff", "not valid text"), ("new\nline.csv", "control character"),
])
def test_unusable_local_names_are_refused_by_name(exports, make_location, bucket, target, why):
    with pytest.raises(ConfigError, match=why) as refused:
        export_listing(listing_of(["ins_dataset/a"]), target, make_location(bucket))
    assert "export_csv" in str(refused.value) and "\x00" not in str(refused.value)
    str(refused.value).encode()  # no lone surrogate in the message: it can be logged and stored
    assert not exports.exists() or not [p for p in exports.rglob("*") if p.is_file()]
