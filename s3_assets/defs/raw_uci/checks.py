"""Checks on the raw tables and the dictionary. Structural failures block; row counts that
differ from the published UCI numbers only warn (a sample or a newer release is not broken data)."""


import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetIn,
    MetadataValue,
    asset_check,
)

from s3_assets.defs.metadata import code_block
from s3_assets.lib.dictionary import DataDictionary
from s3_assets.lib.source import UCI_TABLES, UciTable
from s3_assets.lib.validation import raw_table_problems

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


def raw_values_check(table: UciTable) -> AssetChecksDefinition:
    """Blocking, and upstream of the S3 copy: a table with a value outside its domain is never
    copied, so S3 keeps the last good copy."""

    @asset_check(asset=table.asset, name="values", blocking=True,
                 additional_ins={"data_dictionary": AssetIn("data_dictionary")},
                 description="every value an integer within its dictionary domain, none missing (blocking: "
                             "a failure stops the S3 copy from being written)")
    def check(context: AssetCheckExecutionContext, frame: pd.DataFrame,
              data_dictionary: DataDictionary) -> AssetCheckResult:
        problems = raw_table_problems(frame, table, data_dictionary)
        if problems:
            context.log.error(f"{table.filename} is not copied to S3: " + "; ".join(problems[:10]))
        return AssetCheckResult(passed=not problems, description="; ".join(problems[:3]) or None, metadata={
            "problems": len(problems), "details": code_block(problems[:50] or ["none"])})

    return check


DATA_TABLES = [t for t in UCI_TABLES if not t.is_dictionary]
RAW_CHECKS = [*(raw_shape_check(t) for t in DATA_TABLES), *(raw_values_check(t) for t in DATA_TABLES), dictionary_check]
