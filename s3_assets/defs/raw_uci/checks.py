"""Checks on the raw tables and the dictionary. Structural failures block, and so do row counts
that differ from the published UCI numbers (a cut file is not COIL 2000; the raw asset already
refuses it, the check says so for a stored table).
Whatever relates a raw table to the dictionary (`values`) or to another raw table (`rows_align`)
blocks: a failure there means the S3 copy would be wrong, so the copy is never written."""


import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSpec,
    AssetIn,
    MetadataValue,
    asset_check,
    multi_asset_check,
)

from s3_assets.defs.metadata import code_block
from s3_assets.lib.dictionary import DataDictionary, uci_dictionary_problems
from s3_assets.lib.source import UCI_TABLES, UciTable
from s3_assets.lib.validation import ROW_ALIGNED, raw_table_problems, relation_problems, row_count_problems


def shape_result(frame: pd.DataFrame, table: UciTable) -> AssetCheckResult:
    found = {"rows": len(frame), "columns": frame.shape[1], "expected_columns": table.columns,
             "expected_rows": table.rows if table.rows is not None else "any"}
    if frame.shape[1] != table.columns:
        return AssetCheckResult(passed=False, metadata={**found, "problem": f"{frame.shape[1]} columns, expected {table.columns}"})
    problems = row_count_problems(frame, table)
    if problems:
        return AssetCheckResult(passed=False, description=problems[0], metadata={**found, "problem": problems[0]})
    return AssetCheckResult(passed=True, metadata=found)


def raw_shape_check(table: UciTable) -> AssetChecksDefinition:
    @asset_check(asset=table.asset, name="shape", blocking=True,
                 description=f"{table.columns} columns and {table.rows if table.rows is not None else 'any number of'} "
                             "rows, as UCI publishes them (blocking)")
    def check(frame: pd.DataFrame) -> AssetCheckResult:
        return shape_result(frame, table)

    return check


@asset_check(asset="data_dictionary", name="features_and_value_tables", blocking=True,
             description="86 features, value tables L0-L4 with 41/6/10/10/10 labels")
def dictionary_check(data_dictionary: DataDictionary) -> AssetCheckResult:
    sizes = {name: len(frame) for name, frame in data_dictionary.value_tables.items()}
    problems = uci_dictionary_problems(data_dictionary)
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


ALIGNMENT_CHECK = "rows_align"


def rows_align_check(left: UciTable, right: UciTable) -> AssetChecksDefinition:
    """One check on both tables of a row-aligned pair, blocking on each: if they disagree,
    neither S3 copy is written (Dagster skips both copies' steps), so S3 keeps the last good
    pair instead of a new one beside an old one."""
    tables = {left.asset: left, right.asset: right}
    description = (f"{left.filename} and {right.filename} have the same number of rows (blocking: a failure "
                   "stops both S3 copies from being written)")

    @multi_asset_check(
        name=f"{left.asset}_{right.asset}_{ALIGNMENT_CHECK}",
        specs=[AssetCheckSpec(ALIGNMENT_CHECK, asset=table.asset, blocking=True, description=description,
                              additional_deps=[other.asset for other in tables.values() if other is not table])
               for table in tables.values()],
        ins={table.asset: AssetIn(table.asset) for table in tables.values()},
        description=description,
    )
    def check(context: AssetCheckExecutionContext, **frames: pd.DataFrame):
        problems = relation_problems(frames, tables)
        if problems:
            context.log.error(f"neither {left.s3_relative} nor {right.s3_relative} is copied to S3: " + "; ".join(problems))
        for table in tables.values():
            yield AssetCheckResult(asset_key=table.asset, check_name=ALIGNMENT_CHECK, passed=not problems,
                                   description="; ".join(problems) or None,
                                   metadata={**{f"{name}_rows": len(frame) for name, frame in frames.items()},
                                             "problems": "; ".join(problems) or "none"})

    return check


DATA_TABLES = [t for t in UCI_TABLES if not t.is_dictionary]
_BY_ASSET = {t.asset: t for t in UCI_TABLES}
RAW_CHECKS = [*(raw_shape_check(t) for t in DATA_TABLES), *(raw_values_check(t) for t in DATA_TABLES), dictionary_check,
              *(rows_align_check(_BY_ASSET[left], _BY_ASSET[right]) for left, right in ROW_ALIGNED)]
