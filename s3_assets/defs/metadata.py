"""Materialization metadata that the Dagster UI shows: schemas, row counts, previews."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from s3_assets.lib.text import printable


def code_block(lines: list[str]) -> MetadataValue:
    """Lines of outside text (keys, listings) as a markdown code block that no line can close:
    the fence is longer than any run of backticks inside, and controls are escaped."""
    text = "\n".join(printable(line) for line in lines)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return MetadataValue.md(f"{fence}text\n{text}\n{fence}")


def column_schema(frame: pd.DataFrame, descriptions: dict[str, str] | None = None) -> TableSchema:
    descriptions = descriptions or {}
    return TableSchema(columns=[
        TableColumn(name=str(name), type=str(dtype), description=descriptions.get(str(name)))
        for name, dtype in frame.dtypes.items()
    ])


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def preview(frame: pd.DataFrame, rows: int = 5, columns: int = 12) -> MetadataValue:
    """The first rows as a UI table (at most `columns` columns, so wide tables stay readable)."""
    shown = frame.iloc[:rows, :columns]
    records = [
        TableRecord({str(name): _plain(value) for name, value in zip(shown.columns, row, strict=True)})
        for row in shown.itertuples(index=False, name=None)
    ]
    schema = TableSchema(columns=[TableColumn(name=str(name), type=str(dtype)) for name, dtype in shown.dtypes.items()])
    return MetadataValue.table(records=records, schema=schema)


def table_metadata(frame: pd.DataFrame, descriptions: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "dagster/row_count": len(frame),
        "dagster/column_schema": column_schema(frame, descriptions),
        "columns": frame.shape[1],
        "memory_bytes": int(frame.memory_usage(deep=True).sum()),
        "preview": preview(frame),
    }
