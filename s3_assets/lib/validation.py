"""Is a table what the data dictionary says it is? Every value integer, present, and within its
column's domain. One implementation for the raw tables (before their S3 copies are written) and
for the frames loaded back from S3; each problem names the table, the column and the values."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from s3_assets.lib.dictionary import DataDictionary
from s3_assets.lib.source import UciTable

MAX_VALUES_SHOWN = 5


def dictionary_names(columns: int, dictionary: DataDictionary) -> list[str]:
    """The dictionary's names for a UCI table of `columns` positional columns: train has all 86,
    test the first 85, the ground truth only the last (CARAVAN)."""
    names = dictionary.names
    return names[-1:] if columns == 1 else names[:columns]


def column_problems(series: pd.Series, label: str, domain: tuple[int, int] | None,
                    where: Callable[[object], str]) -> list[str]:
    """Missing values, a non-integer type, or values outside `domain` (inclusive) in one column.
    `where(index)` says where a row is ("row 3", "line 4")."""
    missing = series.isna()
    if missing.any():
        return [f"{label}: {int(missing.sum())} missing value(s), first at {where(series.index[missing][0])}"]
    if not pd.api.types.is_integer_dtype(series):
        return [f"{label}: type {series.dtype}, expected integers"]
    if domain is None:
        return []
    low, high = domain
    outside = (series < low) | (series > high)
    if not outside.any():
        return []
    values = sorted(set(series[outside].tolist()))[:MAX_VALUES_SHOWN]
    first = where(series.index[outside][0])
    return [f"{label}: {int(outside.sum())} value(s) outside {low}..{high}: {values}, first at {first}"]


def frame_problems(name: str, frame: pd.DataFrame, dictionary: DataDictionary) -> list[str]:
    """Problems of a frame whose columns carry dictionary names (the loaded S3 copies)."""
    problems = []
    for column in frame.columns:
        domain = dictionary.allowed_values(column) if column in dictionary.names else None
        problems += column_problems(frame[column], f"{name}.{column}", domain, lambda index: f"row {index}")
    return problems


def raw_table_problems(frame: pd.DataFrame, table: UciTable, dictionary: DataDictionary) -> list[str]:
    """Problems of a raw UCI table (positional columns, row i is line i + 1 of the file): the
    column count first, then every column against its dictionary domain."""
    if frame.shape[1] != table.columns:
        return [f"{table.filename}: {frame.shape[1]} columns, expected {table.columns}"]
    problems = []
    for position, name in enumerate(dictionary_names(table.columns, dictionary)):
        series = frame.iloc[:, position]
        label = f"{table.filename} column {position + 1} ({name})"
        problems += column_problems(series, label, dictionary.allowed_values(name),
                                    lambda index: f"line {int(str(index)) + 1}")
    return problems


def row_count_problems(frame: pd.DataFrame, table: UciTable, origin: str = "") -> list[str]:
    """A table whose row count is not the published one (a cut or padded file), naming the file,
    the rows found and expected."""
    if table.rows is None or len(frame) == table.rows:
        return []
    return [f"{origin or table.filename}: {len(frame):,} rows, expected {table.rows:,} (UCI COIL 2000 publishes "
            f"{table.rows:,}; a cut or padded file)"]


# Raw tables that only make sense together: row i of the test set is the customer whose CARAVAN
# is row i of the ground truth. A copy of either is wrong unless both agree, so both copies wait
# for this relation (the blocking `rows_align` check, and each copy again before it writes).
ROW_ALIGNED: tuple[tuple[str, str], ...] = (("test", "ground_truth"),)


def related_tables(asset: str) -> list[str]:
    """The other raw tables whose rows must line up with `asset`'s."""
    return [other for pair in ROW_ALIGNED if asset in pair for other in pair if other != asset]


def relation_problems(frames: dict[str, pd.DataFrame], tables: dict[str, UciTable]) -> list[str]:
    """Row alignment between related raw tables (`frames` and `tables` by asset name), naming
    both files and their row counts; pairs not both in `frames` are not judged here."""
    problems = []
    for left, right in ROW_ALIGNED:
        if left in frames and right in frames and len(frames[left]) != len(frames[right]):
            problems.append(f"{tables[left].filename} has {len(frames[left]):,} rows and {tables[right].filename} "
                            f"has {len(frames[right]):,}: their rows must correspond one to one")
    return problems
