"""Checks on the loaded frames: every value in its dictionary domain, test and ground truth aligned."""


from typing import Any

import pandas as pd
from dagster import AssetCheckResult, AssetIn, asset_check

from s3_assets.defs.metadata import code_block
from s3_assets.lib.dictionary import DataDictionary
from s3_assets.lib.validation import frame_problems


def domain_problems(frames: dict[str, pd.DataFrame], dictionary: DataDictionary) -> list[str]:
    """Every column outside its dictionary domain, missing values, or not integer; named."""
    return [problem for name, frame in frames.items() for problem in frame_problems(name, frame, dictionary)]


def positive_rate(caravan: pd.Series) -> str:
    """CARAVAN's positives are the rows that are 1 (a stray 7 is one bad value, not seven
    positives; the domain check reports it)."""
    positives = int((caravan == 1).sum())
    return f"{positives} of {len(caravan)} ({positives / max(len(caravan), 1):.1%})"


@asset_check(asset="dataframes", name="domains", blocking=True,
             additional_ins={"data_dictionary": AssetIn("data_dictionary")},
             description="every coded value within its dictionary domain (MOSTYPE 1..41, L3/L4 0..9, CARAVAN 0/1), "
                         "no missing values, integer columns only")
def domains_check(dataframes: dict[str, pd.DataFrame], data_dictionary: DataDictionary) -> AssetCheckResult:
    problems = domain_problems(dataframes, data_dictionary)
    metadata: dict[str, Any] = {"problems": len(problems), "details": code_block(problems[:50] or ["none"])}
    for name, frame in dataframes.items():
        if "CARAVAN" in frame.columns:
            metadata[f"{name}_caravan_positive"] = positive_rate(frame["CARAVAN"])
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
