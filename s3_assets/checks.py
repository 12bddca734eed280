"""Asset checks: shapes, domains from the data dictionary, consistency, and that the S3 copies
are the raw tables. Structural failures block downstream assets; row counts that differ from
the published UCI numbers only warn (a sample or a newer release is not broken data)."""

import hashlib

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetChecksDefinition, AssetIn, MetadataValue, asset_check

from s3_assets.dictionary import DataDictionary
from s3_assets.resources import S3Location
from s3_assets.uci import UCI_TABLES, UciTable

# The published sizes of COIL 2000.
UCI_ROWS = {"train": 5822, "test": 4000, "ground_truth": 4000}
UCI_FEATURES = 86
VALUE_TABLE_SIZES = {"L0": 41, "L1": 6, "L2": 10, "L3": 10, "L4": 10}


def shape_result(frame: pd.DataFrame, columns: int, rows: int | None) -> AssetCheckResult:
    found = {"rows": len(frame), "columns": frame.shape[1], "expected_columns": columns}
    if frame.shape[1] != columns:
        return AssetCheckResult(passed=False, metadata={**found, "problem": f"{frame.shape[1]} columns, expected {columns}"})
    if rows is not None and len(frame) != rows:
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN,
                                metadata={**found, "problem": f"{len(frame)} rows, UCI publishes {rows}"})
    return AssetCheckResult(passed=True, metadata=found)


def raw_shape_check(table: UciTable) -> AssetChecksDefinition:
    @asset_check(asset=table.asset, name="shape", blocking=True,
                 description=f"{table.columns} columns (blocking); {UCI_ROWS.get(table.asset, 'any')} rows (warns)")
    def check(frame: pd.DataFrame) -> AssetCheckResult:
        return shape_result(frame, table.columns, UCI_ROWS.get(table.asset))

    return check


def copy_matches_raw_check(table: UciTable) -> AssetChecksDefinition:
    @asset_check(asset=f"{table.copy_name}_csv", name="matches_raw_table", additional_ins={"frame": AssetIn(table.asset)},
                 description="the S3 object has the size and MD5 ETag of the raw table's to_csv(index=False)")
    def check(frame: pd.DataFrame, location: S3Location) -> AssetCheckResult:
        body = frame.to_csv(index=False).encode()
        key = location.key(table.s3_relative)
        head = location.client.head_object(Bucket=location.resolved_bucket(), Key=key)
        found = {"size": head["ContentLength"], "etag": head["ETag"].strip('"'),
                 "expected_size": len(body), "expected_md5": hashlib.md5(body, usedforsecurity=False).hexdigest()}
        passed = found["size"] == found["expected_size"] and found["etag"] == found["expected_md5"]
        return AssetCheckResult(passed=passed, metadata={**found, "uri": location.uri(key)})

    return check


@asset_check(asset="data_dictionary", name="features_and_value_tables", blocking=True,
             description="86 features, value tables L0-L4 with 41/6/10/10/10 labels")
def dictionary_check(data_dictionary: DataDictionary) -> AssetCheckResult:
    sizes = {name: len(frame) for name, frame in data_dictionary.value_tables.items()}
    problems = []
    if len(data_dictionary.features) != UCI_FEATURES:
        problems.append(f"{len(data_dictionary.features)} features, expected {UCI_FEATURES}")
    problems += [f"{name} has {sizes.get(name, 0)} labels, expected {n}" for name, n in VALUE_TABLE_SIZES.items()
                 if sizes.get(name) != n]
    return AssetCheckResult(passed=not problems, metadata={
        "features": len(data_dictionary.features), "value_tables": MetadataValue.json(sizes),
        "problems": "; ".join(problems) or "none"})


def domain_problems(frames: dict[str, pd.DataFrame], dictionary: DataDictionary) -> list[str]:
    """Every column outside its dictionary domain, missing values, or not integer; named."""
    problems = []
    for name, frame in frames.items():
        for column in frame.columns:
            series = frame[column]
            if series.isna().any():
                rows = series.index[series.isna()].tolist()
                problems.append(f"{name}.{column}: {len(rows)} missing value(s), first at row {rows[0]}")
                continue
            if not pd.api.types.is_integer_dtype(series):
                problems.append(f"{name}.{column}: type {series.dtype}, expected integers")
                continue
            if column not in dictionary.names:
                continue
            low, high = dictionary.allowed_values(column)
            bad = series[(series < low) | (series > high)]
            if len(bad):
                values = sorted(set(bad.tolist()))[:5]
                problems.append(f"{name}.{column}: {len(bad)} value(s) outside {low}..{high}: {values}")
    return problems


@asset_check(asset="dataframes", name="domains", blocking=True,
             additional_ins={"data_dictionary": AssetIn("data_dictionary")},
             description="every coded value within its dictionary domain (MOSTYPE 1..41, L3/L4 0..9, CARAVAN 0/1), "
                         "no missing values, integer columns only")
def domains_check(dataframes: dict[str, pd.DataFrame], data_dictionary: DataDictionary) -> AssetCheckResult:
    problems = domain_problems(dataframes, data_dictionary)
    metadata = {"problems": len(problems), "details": MetadataValue.md("\n".join(f"- {p}" for p in problems[:50]) or "none")}
    for name, frame in dataframes.items():
        if "CARAVAN" in frame.columns and pd.api.types.is_numeric_dtype(frame["CARAVAN"]):
            positives = int(frame["CARAVAN"].sum())
            metadata[f"{name}_caravan_positive"] = f"{positives} of {len(frame)} ({positives / max(len(frame), 1):.1%})"
    return AssetCheckResult(passed=not problems, metadata=metadata)


@asset_check(asset="dataframes", name="test_and_ground_truth_align", blocking=True,
             description="test and gt have the same number of rows; test has train's features in order")
def alignment_check(dataframes: dict[str, pd.DataFrame]) -> AssetCheckResult:
    test, truth, train = dataframes.get("test"), dataframes.get("gt"), dataframes.get("train")
    problems = []
    if test is None or truth is None:
        problems.append(f"missing frame(s): {sorted({'test', 'gt'} - set(dataframes))}")
    elif len(test) != len(truth):
        problems.append(f"test has {len(test)} rows, gt has {len(truth)}")
    if train is not None and test is not None and list(test.columns) != list(train.columns[: test.shape[1]]):
        problems.append("test's columns are not train's first columns in order")
    return AssetCheckResult(passed=not problems, metadata={"problems": "; ".join(problems) or "none"})


CHECKS = [
    *(raw_shape_check(t) for t in UCI_TABLES if not t.is_dictionary),
    *(copy_matches_raw_check(t) for t in UCI_TABLES),
    dictionary_check, domains_check, alignment_check,
]
