"""Materialization metadata that the Dagster UI shows: schemas, row counts, previews."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
from dagster import MetadataValue, TableColumn, TableRecord, TableSchema

from s3_assets.lib.text import printable, shown_url


def code_block(lines: list[str], language: str = "text") -> MetadataValue:
    """Lines of outside text (keys, listings) as a markdown code block that no line can close:
    the fence is longer than any run of backticks inside, and controls are escaped."""
    return MetadataValue.md(fenced(lines, language))


def fenced(lines: list[str], language: str = "text") -> str:
    text = "\n".join(printable(line) for line in lines)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~])")


def md_text(text: str) -> str:
    """Outside text as literal markdown text (a table cell, a label): controls escaped, and
    every character markdown gives a meaning to backslash-escaped (`|` cannot end a cell, `<`
    starts no HTML, `[` no link)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", printable(text))


# -- where the data is, and how to read it ------------------------------------------------------

def location_metadata(s3_prefix: Any) -> dict[str, Any]:
    """The S3 endpoint for a target other than AWS (the embedded server's URL for `local`), so a
    person can point another client at it; no credential. AWS's endpoint is the default."""
    if s3_prefix.s3.target == "aws":
        return {}
    return {"s3_endpoint": MetadataValue.text(shown_url(str(s3_prefix.connect().meta.endpoint_url)))}


def _local_start(s3_prefix: Any) -> list[str]:
    if s3_prefix.s3.target != "local":
        return []
    return ["s3_prefix.s3.start_local_server()  # the embedded S3"]


def read_copy_snippet(s3_prefix: Any, key: str) -> MetadataValue:
    """The notebook code that reads the copy at `key` with pandas, as the original notebook did
    (credentials come from the project's settings at run time; none is shown)."""
    return MetadataValue.md(fenced([
        "import pandas as pd",
        "from s3_assets.settings import build_resources",
        "",
        "s3_prefix = build_resources()[\"s3_prefix\"]  # S3_ASSETS_*",
        *_local_start(s3_prefix),
        f"uri = {s3_prefix.uri(key)!r}",
        "frame = pd.read_csv(uri, storage_options=s3_prefix.s3.storage_options())",
    ], "python"))


def load_value_snippet(asset_name: str, what: str) -> MetadataValue:
    """The notebook code that loads the stored value of `asset_name` through the IO manager."""
    return MetadataValue.md(fenced([
        "from s3_assets.definitions import defs  # S3_ASSETS_*",
        "",
        f"# {what}",
        f"{asset_name} = defs.load_asset_value({asset_name!r})",
    ], "python"))


# -- a plot the UI renders: a markdown table with bars ---------------------------------------------

BAR_WIDTH = 10
# The UI draws a markdown value on the asset's page only while it is shorter than this; a longer
# one becomes a "[Show Markdown]" button (Dagster 1.13's MetadataEntry). A `data:` image does
# render, but its base64 is far over this for a labelled chart: hence text bars.
INLINE_MARKDOWN_CHARS = 1000


def rate_chart(frame: pd.DataFrame, by: str, target: str, labels: dict[int, str] | None, title: str) -> MetadataValue:
    """`target`'s positive rate (share of rows equal to 1) for each value of `by`, as a narrow
    markdown table with a bar of block characters, short enough to be drawn on the asset's page
    (`INLINE_MARKDOWN_CHARS`) and narrow enough for its metadata column. Labels are escaped."""
    known = frame[[by, target]].dropna()
    grouped = known.groupby(by, observed=True)[target].agg(rows="size", positives=lambda s: int((s == 1).sum()))
    grouped["rate"] = grouped["positives"] / grouped["rows"].clip(lower=1)
    top = float(grouped["rate"].max()) if len(grouped) else 0.0
    overall = int((known[target] == 1).sum()) / max(len(known), 1)
    lines = [f"**{md_text(title)}**, all rows {overall:.1%}", "",
             f"| {md_text(by)} | {md_text(target)} = 1 / rows | rate |", "|---|---:|---|"]
    for code, row in grouped.iterrows():
        try:
            label = (labels or {}).get(int(code), "")
        except (TypeError, ValueError):  # already a label (a labelled table)
            label = ""
        bar = "█" * max(1, round(BAR_WIDTH * row["rate"] / top)) if top > 0 and row["rate"] > 0 else "·"
        lines.append(f"| {md_text(str(code))} {md_text(str(label))[:40]} | {int(row['positives']):,} / "
                     f"{int(row['rows']):,} | {row['rate']:.1%} {bar} |")
    return MetadataValue.md("\n".join(lines))


def code_span(text: str) -> str:
    """`text` as an inline markdown code span that nothing in it can close or turn into HTML
    (for a configured URI in a description: S3 keys may hold backticks and angle brackets)."""
    text = printable(text)
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    padded = f" {text} " if text.startswith("`") or text.endswith("`") else text
    return f"{fence}{padded}{fence}"


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


def _cell(value: Any) -> Any:
    plain = _plain(value)
    return printable(plain) if isinstance(plain, str) else plain  # outside text: controls escaped


def preview(frame: pd.DataFrame, rows: int = 5, columns: int | list[str] = 12) -> MetadataValue:
    """The first rows as a UI table: the first `columns` columns, or the ones named (choose
    those people look for, so a wide table stays readable)."""
    shown = frame[columns].iloc[:rows] if isinstance(columns, list) else frame.iloc[:rows, :columns]
    records = [
        TableRecord({str(name): _cell(value) for name, value in zip(shown.columns, row, strict=True)})
        for row in shown.itertuples(index=False, name=None)
    ]
    schema = TableSchema(columns=[TableColumn(name=str(name), type=str(dtype)) for name, dtype in shown.dtypes.items()])
    return MetadataValue.table(records=records, schema=schema)


# What each column of the listing (`s3_assets.lib.listing`) holds, for its schema in the UI.
LISTING_COLUMNS = {
    "key": "the object's full key",
    "size": "size in bytes",
    "last_modified": "last modified, UTC",
    "etag": "ETag without quotes (the MD5 of the content for single-part uploads)",
    "storage_class": "S3 storage class (STANDARD, ...)",
    "is_folder": "a folder marker (a zero-byte key ending in /), not a file",
    "depth": "number of folders between the prefix and the object (0: directly under the prefix)",
    "name": "the last part of the key (the file name)",
    "extension": "lower-case file extension without the dot ('' for none and for folders)",
    "uri": "s3:// URI of the object",
}
# The listing's preview: the columns that tell objects apart, narrow enough to fit the page.
LISTING_PREVIEW_COLUMNS = ["key", "size", "last_modified", "is_folder"]


def schema_summary(frame: pd.DataFrame) -> str:
    """'86 columns (MOSTYPE ... CARAVAN), uint8 x 86': a frame's schema on one line."""
    names = [str(c) for c in frame.columns]
    shown = ", ".join(names) if len(names) <= 3 else f"{names[0]} ... {names[-1]}"
    types = ", ".join(f"{dtype} x {count}" for dtype, count in frame.dtypes.astype(str).value_counts().items())
    return f"{len(names)} column{'s' if len(names) != 1 else ''} ({shown}); {types}"


def frames_table(frames: dict[str, pd.DataFrame]) -> MetadataValue:
    """One row per frame of a dict of frames: its own rows, columns and schema (never summed)."""
    return MetadataValue.table(
        records=[TableRecord({"name": name, "rows": len(frame), "columns": frame.shape[1],
                              "memory_bytes": int(frame.memory_usage(deep=True).sum()),
                              "schema": schema_summary(frame)}) for name, frame in frames.items()],
        schema=TableSchema(columns=[
            TableColumn("name", "string"), TableColumn("rows", "int"), TableColumn("columns", "int"),
            TableColumn("memory_bytes", "int", description="in-memory size, bytes"),
            TableColumn("schema", "string", description="column count, first ... last column, types"),
        ]),
    )


def table_metadata(frame: pd.DataFrame, descriptions: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "dagster/row_count": len(frame),
        "dagster/column_schema": column_schema(frame, descriptions),
        "columns": frame.shape[1],
        "memory_bytes": int(frame.memory_usage(deep=True).sum()),
        "preview": preview(frame),
    }
