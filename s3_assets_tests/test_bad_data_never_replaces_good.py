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
    filename, edit, (more_test, more_truth) = MISALIGNED[case]
    rows = len((good / "tictgts2000.txt").read_text().splitlines())
    return filename, edit, (f"ticeval2000.txt has {rows + more_test:,} rows and tictgts2000.txt has "
                            f"{rows + more_truth:,}: their rows must correspond one to one")


def stored_pair(client, bucket: str) -> list[tuple[bytes, str]]:
    return [(got["Body"].read(), got["ETag"]) for got in (client.get_object(Bucket=bucket, Key=k) for k in PAIR_KEYS)]


@pytest.mark.parametrize("selection", ["everything", "both_copies"])
@pytest.mark.parametrize("case", sorted(MISALIGNED))
def test_misaligned_test_and_ground_truth_write_neither_copy(good_copy, uci_dir, tmp_path, case, selection):
    """Row alignment blocks before either copy is written: the run fails naming the check and
    both files, and S3 keeps the last good test.csv and gt.csv."""
    location, cache, _, _, client, instance = good_copy  # later runs read the stored values through it
    before = stored_pair(client, location.bucket)
    filename, edit, expected = misaligned(case, uci_dir)
    source = edit_file(uci_dir, tmp_path / "bad", filename, edit)
    chosen = None if selection == "everything" else AssetSelection.assets("test_csv", "gt_csv").upstream()
    result = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, source, cache), selection=chosen,
                         instance=instance, raise_on_error=False)
    assert not result.success
    text = failure_text(result)
    assert expected in text and "rows_align" in text
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert not materialized & {AssetKey("test_csv"), AssetKey("gt_csv")}
    assert stored_pair(client, location.bucket) == before


def test_a_stored_misaligned_table_is_not_copied_alone(good_copy, uci_dir, tmp_path):
    """`gt_csv` selected alone re-copies the stored `ground_truth`: if that disagreed with the
    stored `test` (an earlier run's check failed), the copy refuses it before writing."""
    location, cache, _, _, client, instance = good_copy  # the instance that recorded data_dictionary
    before = stored_pair(client, location.bucket)
    filename, edit, expected = misaligned("ground_truth_missing_a_row", uci_dir)
    source = edit_file(uci_dir, tmp_path / "bad", filename, edit)
    resources = graph_resources(location, source, cache)
    first = materialize([*ASSETS, *CHECKS], resources=resources, selection=AssetSelection.assets("test", "ground_truth"),
                        instance=instance, raise_on_error=False)
    assert not first.success and "rows_align" in failure_text(first)
    for alone in ("gt_csv", "test_csv"):
        again = materialize([*ASSETS, *CHECKS], resources=resources, selection=AssetSelection.assets(alone),
                            instance=instance, raise_on_error=False)
        assert not again.success
        assert "is not copied to s3://" in failure_text(again) and expected in failure_text(again)
    assert stored_pair(client, location.bucket) == before
    fixed = materialize([*ASSETS, *CHECKS], resources=graph_resources(location, uci_dir, cache), instance=instance)
    assert fixed.success
