"""Checks on the loaded frames: every value in its dictionary domain, test and ground truth aligned."""


import pandas as pd
from dagster import AssetCheckResult, AssetIn, MetadataValue, asset_check

from s3_assets.lib.dictionary import DataDictionary


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


ANALYSIS_CHECKS = [domains_check, alignment_check]
