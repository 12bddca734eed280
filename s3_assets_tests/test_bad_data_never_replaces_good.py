"""Bad data never replaces good data: a source file that fails the blocking checks (a value out
of its domain, a short row, an extra column, a missing value, a non-integer, a narrower file)
fails the run, naming the file, column and values, and the S3 copy stays byte-identical to the
last good one, for the whole graph and for subsets."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance, materialize

from s3_assets.defs import ASSETS, CHECKS
from s3_assets_tests.conftest import graph_resources

TRAIN_KEY = "ins_dataset/raw/train.csv"


def edit_cell(line: int, column: int, value: str) -> Callable[[list[list[str]]], None]:
    def edit(rows: list[list[str]]) -> None:
        rows[line - 1][column - 1] = value

    return edit


def short_row(rows: list[list[str]]) -> None:
    rows[4] = rows[4][:50]


def extra_column(rows: list[list[str]]) -> None:
    rows[4].append("1")


def narrower_file(rows: list[list[str]]) -> None:
    for row in rows:
        del row[-1]


def wider_file(rows: list[list[str]]) -> None:
    for row in rows:
        row.append("0")


# (edit of ticdata2000.txt, text the failure must contain)
BAD_SOURCES = {
    "out_of_domain": (edit_cell(4, 3, "-3"), "ticdata2000.txt column 3 (MGEMOMV): 1 value(s) outside 1..6: [-3], first at line 4"),
    "out_of_domain_target": (edit_cell(7, 86, "7"), "ticdata2000.txt column 86 (CARAVAN): 1 value(s) outside 0..1: [7]"),
    "short_row": (short_row, "ticdata2000.txt"),
    "extra_column": (extra_column, "ticdata2000.txt"),
    "missing_value": (edit_cell(6, 10, ""), "ticdata2000.txt line 6"),
    "non_integer": (edit_cell(9, 2, "2.5"), "ticdata2000.txt line 9, column 2: '2.5' is not a whole number"),
    "narrower_file": (narrower_file, "ticdata2000.txt: expected 86 tab-separated columns, found 85"),
    "wider_file": (wider_file, "ticdata2000.txt: expected 86 tab-separated columns, found 87"),
}


def write_bad_source(good: Path, folder: Path, edit: Callable[[list[list[str]]], None]) -> Path:
    shutil.copytree(good, folder)
    path = folder / "ticdata2000.txt"
    rows = [line.split("\t") for line in path.read_text().splitlines()]
    edit(rows)
    path.write_text("\r\n".join("\t".join(row) for row in rows) + "\r\n")
    return folder


def failure_text(result) -> str:
    """Everything the run said about its failure: step errors and error logs."""
    parts = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            parts.append(str(event.event_specific_data.error))
        if event.event_type_value == "ASSET_CHECK_EVALUATION" and not event.event_specific_data.passed:
            parts.append(event.event_specific_data.description or "")
    return "\n".join(parts)


@pytest.fixture(scope="module")
def good_copy(s3_server, uci_dir, tmp_path_factory):
    """A bucket holding the good graph's copies, the good train.csv's bytes and ETag, and the
    Dagster instance that recorded the stored values (later runs read them only through it)."""
    from s3_assets.defs.resources import S3Connection, S3Prefix

    client = s3_server.client()
    bucket = "bad-data-never-replaces-good"
    client.create_bucket(Bucket=bucket)
    location = S3Prefix(s3=S3Connection(target="local", local_dir=s3_server.local_dir, max_attempts=2), bucket=bucket)
    cache = tmp_path_factory.mktemp("cache")
    instance = DagsterInstance.ephemeral()
    result = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, uci_dir, cache), instance=instance)
    assert result.success
    got = client.get_object(Bucket=bucket, Key=TRAIN_KEY)
    return location, cache, got["Body"].read(), got["ETag"], client, instance


SELECTIONS = {
    "everything": None,
    "train_and_downstream": AssetSelection.assets("train").downstream(),
    "train_and_its_copy": AssetSelection.assets("train", "train_csv"),
}


# Every kind of bad file with the whole graph; the blocking check's kind with each subset.
CASES = [(case, "everything") for case in BAD_SOURCES] + [
    (case, selection) for case in ("out_of_domain", "missing_value") for selection in SELECTIONS if selection != "everything"]


@pytest.mark.parametrize(("case", "selection"), CASES)
def test_bad_source_fails_the_run_and_s3_keeps_the_good_copy(good_copy, uci_dir, tmp_path, case, selection):
    location, cache, good_body, good_etag, client, instance = good_copy
    edit, expected = BAD_SOURCES[case]
    source = write_bad_source(uci_dir, tmp_path / "bad", edit)
    result = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, source, cache),
                         selection=SELECTIONS[selection], instance=instance, raise_on_error=False)
    assert not result.success
    assert expected in failure_text(result)
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey("train_csv") not in materialized
    got = client.get_object(Bucket=location.bucket, Key=TRAIN_KEY)
    assert got["Body"].read() == good_body and got["ETag"] == good_etag


def test_a_stored_table_that_failed_its_check_is_not_copied_alone(good_copy, uci_dir, tmp_path):
    """`train_csv` selected alone re-copies the stored `train`: if that failed its blocking
    check in an earlier run, the copy refuses it before writing."""
    location, cache, good_body, good_etag, client, instance = good_copy
    source = write_bad_source(uci_dir, tmp_path / "bad", BAD_SOURCES["out_of_domain"][0])
    resources = graph_resources(location, source, cache)
    first = materialize([*ASSETS, *CHECKS], resources=resources, selection=AssetSelection.assets("train"),
                        instance=instance, raise_on_error=False)
    assert not first.success  # the stored `train` is now the bad table
    again = materialize([*ASSETS, *CHECKS], resources=resources, selection=AssetSelection.assets("train_csv"),
                        instance=instance, raise_on_error=False)
    assert not again.success
    text = failure_text(again)
    assert "ticdata2000.txt is not copied to s3://" in text and "outside 1..6: [-3]" in text
    got = client.get_object(Bucket=location.bucket, Key=TRAIN_KEY)
    assert got["Body"].read() == good_body and got["ETag"] == good_etag
    # and the good source puts everything right again
    fixed = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, uci_dir, cache),
                        instance=instance)
    assert fixed.success


@pytest.mark.integration
def test_cli_materialize_all_with_a_bad_source_keeps_the_good_copy(s3_server, s3, bucket, uci_dir, tmp_path):
    """`dagster asset materialize --select '*'` as a user types it: good, then one value out of
    its domain; the second run fails naming file, column and value, and train.csv is unchanged."""
    root = Path(__file__).resolve().parents[1]
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home), "S3_ASSETS_LOCAL_DIR": s3_server.local_dir,
           "S3_ASSETS_BUCKET": bucket, "S3_ASSETS_OFFLINE_SOURCE": "", "S3_ASSETS_CACHE_DIR": str(tmp_path / "cache")}
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "s3_assets.definitions",
               "--select", "*"]
    good = subprocess.run(command, cwd=root, env={**env, "S3_ASSETS_SOURCE": str(uci_dir)},
                          capture_output=True, text=True, timeout=600)
    assert good.returncode == 0, good.stderr[-3000:]
    before = s3.get_object(Bucket=bucket, Key=TRAIN_KEY)
    good_body, good_etag = before["Body"].read(), before["ETag"]
    source = write_bad_source(uci_dir, tmp_path / "bad", BAD_SOURCES["out_of_domain"][0])
    bad = subprocess.run(command, cwd=root, env={**env, "S3_ASSETS_SOURCE": str(source)},
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0
    assert "ticdata2000.txt column 3 (MGEMOMV): 1 value(s) outside 1..6: [-3], first at line 4" in bad.stdout + bad.stderr
    after = s3.get_object(Bucket=bucket, Key=TRAIN_KEY)
    assert after["Body"].read() == good_body and after["ETag"] == good_etag


# -- tables that must agree with each other: test and ground truth, row for row ----------------
PAIR_KEYS = ("ins_dataset/raw/test.csv", "ins_dataset/raw/gt.csv")


def edit_file(good: Path, folder: Path, filename: str, edit: Callable[[list[str]], None]) -> Path:
    shutil.copytree(good, folder)
    path = folder / filename
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\r\n".join(lines) + "\r\n")
    return folder


def drop_last_row(lines: list[str]) -> None:
    del lines[-1]


def repeat_a_row(lines: list[str]) -> None:
    lines.append(lines[10])


# (file edited, edit, (test rows, ground truth rows) relative to the good source's n)
MISALIGNED = {
    "ground_truth_missing_a_row": ("tictgts2000.txt", drop_last_row, (0, -1)),
    "test_with_an_extra_row": ("ticeval2000.txt", repeat_a_row, (1, 0)),
}


def misaligned(case: str, good: Path) -> tuple[str, Callable[[list[str]], None], str]:
    """The edit, and the refusal it meets first: each file's row count against UCI's 4,000 (the
    raw asset refuses before `rows_align` could compare the two)."""
    filename, edit, (more_test, more_truth) = MISALIGNED[case]
    rows = len((good / filename).read_text().splitlines())
    found = rows + (more_test if filename == "ticeval2000.txt" else more_truth)
    return filename, edit, f"{filename}: {found:,} rows, expected {rows:,}"


def stored_pair(client, bucket: str) -> list[tuple[bytes, str]]:
    return [(got["Body"].read(), got["ETag"]) for got in (client.get_object(Bucket=bucket, Key=k) for k in PAIR_KEYS)]


@pytest.mark.parametrize("selection", ["everything", "both_copies"])
@pytest.mark.parametrize("case", sorted(MISALIGNED))
def test_misaligned_test_and_ground_truth_write_neither_copy(good_copy, uci_dir, tmp_path, case, selection):
    """A test or ground-truth source that no longer lines up with the other blocks before either
    copy is written: the run fails naming the file and its rows, and S3 keeps the last good
    test.csv and gt.csv."""
    location, cache, _, _, client, instance = good_copy  # later runs read the stored values through it
    before = stored_pair(client, location.bucket)
    filename, edit, expected = misaligned(case, uci_dir)
    source = edit_file(uci_dir, tmp_path / "bad", filename, edit)
    chosen = None if selection == "everything" else AssetSelection.assets("test_csv", "gt_csv").upstream()
    result = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, source, cache), selection=chosen,
                         instance=instance, raise_on_error=False)
    assert not result.success
    assert expected in failure_text(result)
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert not materialized & {AssetKey("test_csv"), AssetKey("gt_csv")}
    assert stored_pair(client, location.bucket) == before


def test_a_refused_table_never_becomes_the_stored_value(good_copy, uci_dir, tmp_path):
    """`gt_csv` or `test_csv` selected alone re-copies the stored raw table: a source the raw
    asset refused (a ground truth short one row) is never stored, so each copies the last good
    table and S3 keeps the same bytes."""
    location, cache, _, _, client, instance = good_copy  # the instance that recorded data_dictionary
    before = stored_pair(client, location.bucket)
    filename, edit, expected = misaligned("ground_truth_missing_a_row", uci_dir)
    source = edit_file(uci_dir, tmp_path / "bad", filename, edit)
    resources = graph_resources(location, source, cache)
    first = materialize([*ASSETS, *CHECKS], resources=resources, selection=AssetSelection.assets("test", "ground_truth"),
                        instance=instance, raise_on_error=False)
    assert not first.success and expected in failure_text(first)
    for alone in ("gt_csv", "test_csv"):
        again = materialize([*ASSETS, *CHECKS], resources=resources, selection=AssetSelection.assets(alone),
                            instance=instance, raise_on_error=False)
        assert again.success
    assert stored_pair(client, location.bucket) == before


# -- sources cut short: every table has the row count UCI documents (issue 19, attack item 5) ---
THREE_KEYS = ("ins_dataset/raw/train.csv", "ins_dataset/raw/test.csv", "ins_dataset/raw/gt.csv")


def keep_first(rows: int) -> Callable[[list[str]], None]:
    def edit(lines: list[str]) -> None:
        del lines[rows:]

    return edit


def stored(client, bucket: str, keys: tuple[str, ...]) -> list[tuple[bytes, str]]:
    return [(got["Body"].read(), got["ETag"]) for got in (client.get_object(Bucket=bucket, Key=k) for k in keys)]


# (files cut to a number of rows, what the failure says); test and ground truth cut alike stay aligned
TRUNCATED = {
    "train_cut": ({"ticdata2000.txt": 5000}, ["ticdata2000.txt: 5,000 rows, expected 5,822"]),
    "test_and_truth_cut_alike": ({"ticeval2000.txt": 3999, "tictgts2000.txt": 3999},
                                 ["ticeval2000.txt: 3,999 rows, expected 4,000", "tictgts2000.txt: 3,999 rows, expected 4,000"]),
    "train_padded": ({"ticdata2000.txt": -1}, ["ticdata2000.txt: 5,823 rows, expected 5,822"]),
}


@pytest.mark.parametrize("selection", ["everything", "copies_with_upstream"])
@pytest.mark.parametrize("case", sorted(TRUNCATED))
def test_a_source_with_other_row_counts_replaces_no_copy(good_copy, uci_dir, tmp_path, case, selection):
    """A table whose row count differs from UCI's (5,822 / 4,000 / 4,000) fails its raw asset,
    naming the file, the rows found and expected; no copy is written (the `shape` check only
    warned on rows before, and the cut tables replaced all three copies)."""
    location, cache, _, _, client, instance = good_copy
    before = stored(client, location.bucket, THREE_KEYS)
    cuts, expected = TRUNCATED[case]
    source = tmp_path / "cut"
    shutil.copytree(uci_dir, source)
    for filename, rows in cuts.items():
        lines = (source / filename).read_text().splitlines()
        lines = lines + lines[:1] if rows < 0 else lines[:rows]
        (source / filename).write_text("\r\n".join(lines) + "\r\n")
    chosen = None if selection == "everything" else AssetSelection.assets("train_csv", "test_csv", "gt_csv").upstream()
    result = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, source, cache), selection=chosen,
                         instance=instance, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert all(part in text for part in expected), text[-3000:]
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    copies = {"ticdata2000.txt": "train_csv", "ticeval2000.txt": "test_csv", "tictgts2000.txt": "gt_csv"}
    assert not materialized & {AssetKey(copies[filename]) for filename in cuts}
    assert stored(client, location.bucket, THREE_KEYS) == before  # the good tables' copies are rewritten unchanged


# -- the dictionary: nothing a later step refuses reaches raw/metadata/col_info.csv (item 2) ----
COL_INFO_KEY = "ins_dataset/raw/metadata/col_info.csv"


def first_lines(count: int) -> Callable[[bytes], bytes]:
    return lambda content: b"\r\n".join(content.splitlines()[:count]) + b"\r\n"


def without_label(table: str) -> Callable[[bytes], bytes]:
    """The value table's last label dropped: the dictionary still parses, but is short a label."""
    def edit(content: bytes) -> bytes:
        lines = content.splitlines()
        start = lines.index(f"{table}:".encode())
        end = next((i for i in range(start + 1, len(lines)) if lines[i].endswith(b":")), len(lines))
        last = max(i for i in range(start, end) if lines[i].strip() and lines[i][:1].isdigit())
        return b"\r\n".join(lines[:last] + lines[last + 1:]) + b"\r\n"

    return edit


# (edit of dictionary.txt, text the failure must contain)
BAD_DICTIONARIES = {
    "first_120_lines": (first_lines(120), "refers to L1, which is not defined"),
    "one_line_not_a_dictionary": (lambda _: b"this is not the data dictionary\n", "no features table found"),
    "a_value_label_missing": (without_label("L2"), "L2 has 9 labels, expected 10"),
    "last_feature_missing": (lambda content: b"\n".join(line for line in content.splitlines() if not line.startswith(b"86 ")),
                             "85 features, expected 86"),
}


@pytest.mark.parametrize("selection", ["everything", "dictionary_and_its_copy", "stored_then_copy_alone"])
@pytest.mark.parametrize("case", sorted(BAD_DICTIONARIES))
def test_a_bad_dictionary_source_replaces_no_copy(good_copy, uci_dir, tmp_path, case, selection):
    """A dictionary source that a later step would refuse (does not parse, refers to a missing
    value table, short of features or labels) fails before `col_info_csv` is written, naming
    dictionary.txt: S3 keeps the last good col_info.csv. Before, the copy was replaced
    (4,823 -> 3,888 or 24 bytes) and only `data_dictionary` failed afterwards."""
    location, cache, _, _, client, instance = good_copy
    before = stored(client, location.bucket, (COL_INFO_KEY,))
    edit, expected = BAD_DICTIONARIES[case]
    source = tmp_path / "bad"
    shutil.copytree(uci_dir, source)
    (source / "dictionary.txt").write_bytes(edit((uci_dir / "dictionary.txt").read_bytes()))
    resources = graph_resources(location, source, cache)
    runs = {"everything": [None], "dictionary_and_its_copy": [AssetSelection.assets("dictionary_text", "col_info_csv")],
            "stored_then_copy_alone": [AssetSelection.assets("dictionary_text"), AssetSelection.assets("col_info_csv")]}
    results = [materialize([*ASSETS, *CHECKS], resources=resources, selection=chosen, instance=instance,
                           raise_on_error=False) for chosen in runs[selection]]
    assert not results[0].success
    assert "dictionary.txt is not a usable data dictionary" in failure_text(results[0])
    assert expected in failure_text(results[0])
    materialized = {e.asset_key for e in results[0].get_asset_materialization_events()}
    assert AssetKey("col_info_csv") not in materialized and AssetKey("dictionary_text") not in materialized
    # copied alone afterwards, the stored table is still the last good one
    assert all(result.success for result in results[1:])
    assert stored(client, location.bucket, (COL_INFO_KEY,)) == before
