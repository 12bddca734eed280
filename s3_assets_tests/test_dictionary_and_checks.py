"""The data dictionary as data, typed and labelled frames, the modelling table, and asset checks
that fail (naming the column and values) when fed corrupted data."""

from __future__ import annotations

import pandas as pd
import pytest
from dagster import AssetCheckKey, AssetKey, AssetSelection

from s3_assets.defs.analysis.checks import domain_problems
from s3_assets.defs.raw_uci.checks import shape_result
from s3_assets.lib.dictionary import (
    DictionaryError,
    decode_dictionary,
    labelled,
    parse_dictionary,
    type_by_domain,
)
from s3_assets.lib.source import UciTable
from s3_assets_tests.uci_fixtures import dictionary_text, tables, write_uci_files


@pytest.fixture(scope="module")
def fixture_dictionary():
    return parse_dictionary(dictionary_text())


def test_fixture_dictionary_parses_with_inherited_domains(fixture_dictionary):
    features = fixture_dictionary.features.set_index("name")
    assert len(features) == 86 and features.index[0] == "MOSTYPE" and features.index[-1] == "CARAVAN"
    assert features.loc["MAANTHUI", "domain"] == "1 - 10"  # en dash normalised
    assert features.loc["MFEAT07", "value_table"] == "L3"  # "..." inherits
    assert features.loc["MFEAT30", "value_table"] == "L3"  # blank inherits
    assert fixture_dictionary.allowed_values("ANUMBER70") == (0, 12)  # counts allow 0
    assert fixture_dictionary.labels("MOSTYPE")[1] == "Subtype 1, with comma"


@pytest.mark.real_data
def test_real_dictionary(real_dir):
    dictionary = parse_dictionary(decode_dictionary((real_dir / "dictionary.txt").read_bytes()))
    assert len(dictionary.features) == 86
    assert {k: len(v) for k, v in dictionary.value_tables.items()} == {"L0": 41, "L1": 6, "L2": 10, "L3": 10, "L4": 10}
    assert dictionary.labels("MOSTYPE")[1] == "High Income, expensive child"
    assert dictionary.allowed_values("MOSTYPE") == (1, 41)
    assert dictionary.allowed_values("PWAPART") == (0, 9)
    assert dictionary.descriptions()["CARAVAN"] == "Number of mobile home policies"
    assert dictionary.value_tables["L4"].loc[1, "label"] == "f 1 \u2013 49"


@pytest.mark.parametrize(("text", "message"), [
    ("DATA DICTIONARY\n\nnothing here\n", "no features table found"),
    ("Nr Name Description Domain\n1 MOSTYPE Customer Subtype see L0\nbroken line here\n", "line 3: not a feature row"),
    ("Nr Name Description Domain\n1 MOSTYPE Customer Subtype see L9\n", "refers to L9, which is not defined"),
    ("Nr Name Description Domain\n1 MOSTYPE Customer Subtype\n", "line 2: the first feature has no domain"),
    ("Nr Name Description Domain\n1 A x 1 - 2\n\nL0:\n\nValue Label\nnot a value\n", "line 7: not a 'value label' row of L0"),
    ("Nr Name Description Domain\n1 A x 1 - 2\n3 B y 1 - 2\n", r"feature numbers are not 1..2 in order"),
])
def test_bad_dictionary_names_the_line(text, message):
    with pytest.raises(DictionaryError, match=message):
        parse_dictionary(text)


def test_domain_typing_and_labels(fixture_dictionary):
    frame = pd.DataFrame({"MOSTYPE": [1, 41], "ANUMBER70": [0, 12], "CARAVAN": [0, 1]}, dtype="int64")
    typed = type_by_domain(frame.copy(), fixture_dictionary)
    assert [str(t) for t in typed.dtypes] == ["uint8", "uint8", "uint8"]
    outside = type_by_domain(pd.DataFrame({"MOSTYPE": [300]}, dtype="int64"), fixture_dictionary)
    assert str(outside["MOSTYPE"].dtype) == "int64"  # never wrapped by a cast
    view = labelled(frame, fixture_dictionary)
    assert view["MOSTYPE"].tolist() == ["Subtype 1, with comma", "Subtype 41, with comma"]
    assert isinstance(view["MOSTYPE"].dtype, pd.CategoricalDtype)


def test_domain_problems_name_column_and_values(fixture_dictionary):
    frames = {"train": pd.DataFrame({"MOSTYPE": [1, 99, 0], "CARAVAN": [0, 1, 2], "MAANTHUI": [1.0, None, 2.0]})}
    problems = domain_problems(frames, fixture_dictionary)
    assert "train.MOSTYPE: 2 value(s) outside 1..41: [0, 99], first at row 1" in problems
    assert "train.CARAVAN: 1 value(s) outside 0..1: [2], first at row 2" in problems
    assert "train.MAANTHUI: 1 missing value(s), first at row 1" in problems
    floats = domain_problems({"t": pd.DataFrame({"MOSTYPE": [1.5]})}, fixture_dictionary)
    assert floats == ["t.MOSTYPE: type float64, expected integers"]


def test_shape_result_blocks_on_columns_and_on_rows():
    table = UciTable("t", "t.txt", "raw/t.csv", 3, "three columns, five rows", rows=5)
    assert not shape_result(pd.DataFrame([[1, 2]] * 5), table).passed
    short = shape_result(pd.DataFrame([[1, 2, 3]] * 2), table)
    assert not short.passed and short.severity.value == "ERROR"  # was a warning: a cut file was copied
    assert short.description == "t.txt: 2 rows, expected 5 (UCI COIL 2000 publishes 5; a cut or padded file)"
    assert shape_result(pd.DataFrame([[1, 2, 3]] * 5), table).passed


def check_results(result) -> dict[str, object]:
    return {e.asset_check_key.name + "@" + e.asset_key.to_user_string(): e
            for e in (ev.event_specific_data for ev in result.all_events if ev.event_type_value == "ASSET_CHECK_EVALUATION")}


def test_checks_pass_on_good_data_and_report_positive_rate(bucket, make_location, run_graph, uci_dir):
    result = run_graph(make_location(bucket), uci_dir)
    checks = check_results(result)
    assert checks["domains@dataframes"].passed
    assert checks["matches_raw_table@train_csv"].passed
    assert checks["features_and_value_tables@data_dictionary"].passed
    assert checks["test_and_ground_truth_align@dataframes"].passed
    assert checks["shape@train"].passed  # UCI's 5822 rows (another count is refused)
    expected = int((tables()["ticdata2000.txt"][85] == 1).sum())
    assert checks["domains@dataframes"].metadata["train_caravan_positive"].value.startswith(f"{expected} of 5822 (")
    table = result.output_for_node("modelling_table")
    assert table.shape == (9822, 87) and table["split"].value_counts().to_dict() == {"train": 5822, "test": 4000}


@pytest.mark.real_data
def test_checks_on_the_real_data(bucket, make_location, run_graph, real_dir):
    result = run_graph(make_location(bucket), real_dir)
    checks = check_results(result)
    assert all(c.passed for c in checks.values()), {k: c.metadata for k, c in checks.items() if not c.passed}
    meta = checks["domains@dataframes"].metadata
    assert meta["train_caravan_positive"].value.startswith("348 of 5822")
    assert meta["gt_caravan_positive"].value.startswith("238 of 4000")
    table = result.output_for_node("modelling_table")
    assert table.shape == (9822, 87)
    assert table.drop(columns="split").memory_usage(deep=True).sum() < 1_000_000  # ~4 MB as int64


def test_corrupted_values_fail_the_domain_check_and_block_downstream(s3, bucket, make_location, run_graph, uci_dir):
    """Bad values in a source file never reach S3 (test_bad_data_never_replaces_good.py); if
    someone else writes them there, the frames' own check blocks the modelling table."""
    location = make_location(bucket)
    run_graph(location, uci_dir)
    lines = s3.get_object(Bucket=bucket, Key="ins_dataset/raw/train.csv")["Body"].read().decode().splitlines()
    cells = lines[4].split(",")
    cells[0], cells[-1] = "77", "3"  # MOSTYPE 77 (domain 1..41), CARAVAN 3
    lines[4] = ",".join(cells)
    s3.put_object(Bucket=bucket, Key="ins_dataset/raw/train.csv", Body=("\n".join(lines) + "\n").encode())
    result = run_graph(location, uci_dir, selection=AssetSelection.assets("s3_listing").downstream(),
                       raise_on_error=False)
    check = check_results(result)["domains@dataframes"]
    assert not check.passed
    details = check.metadata["details"].value
    assert "train.MOSTYPE: 1 value(s) outside 1..41: [77], first at row 3" in details
    assert "train.CARAVAN: 1 value(s) outside 0..1: [3], first at row 3" in details
    # one stray 3 is one bad value, not three positives
    expected = int((tables()["ticdata2000.txt"][85].drop(index=3) == 1).sum())
    assert check.metadata["train_caravan_positive"].value.startswith(f"{expected} of 5822 (")
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey("dataframes") in materialized and AssetKey("modelling_table") not in materialized


def test_wrong_column_count_blocks_the_copy(bucket, make_location, run_graph, tmp_path):
    source = write_uci_files(tmp_path / "short")
    # test with 84 columns: the raw asset itself refuses it, naming the file.
    lines = (source / "ticeval2000.txt").read_text().splitlines()
    (source / "ticeval2000.txt").write_text("\r\n".join("\t".join(line.split("\t")[:84]) for line in lines) + "\r\n")
    result = run_graph(make_location(bucket), source, raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert any("ticeval2000.txt: expected 85 tab-separated columns, found 84" in str(e.event_specific_data.error)
               for e in failures)


def test_copy_check_fails_when_s3_object_was_changed(s3, bucket, make_location, run_graph, uci_dir):
    location = make_location(bucket)
    run_graph(location, uci_dir)
    s3.put_object(Bucket=bucket, Key="ins_dataset/raw/gt.csv", Body=b"CARAVAN\n1\n")
    result = run_graph(location, uci_dir, selection=AssetSelection.checks(AssetCheckKey(AssetKey("gt_csv"), "matches_raw_table")))
    check = check_results(result)["matches_raw_table@gt_csv"]
    assert not check.passed and check.metadata["size"].value == len(b"CARAVAN\n1\n")
