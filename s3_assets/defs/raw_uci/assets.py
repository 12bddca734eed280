"""The raw UCI tables, read as the notebook read them, and the data dictionary as data.

The factory takes the configured `UciSource` when the definitions load, so each asset shows
where its file comes from before any run."""

import hashlib

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from s3_assets.defs.metadata import preview, table_metadata
from s3_assets.defs.resources import UciSource
from s3_assets.lib.dictionary import UCI_FEATURES, parse_dictionary, usable_dictionary
from s3_assets.lib.source import UCI_TABLES, BadInputError, UciTable, read_uci_table
from s3_assets.lib.validation import row_count_problems

RAW_GROUP = "uci_raw"


def raw_table_asset(table: UciTable, uci_source: UciSource | None = None) -> AssetsDefinition:
    """The raw table of `table`; with `uci_source`, where it comes from is in its metadata."""
    definition_metadata: dict[str, object] = {"expected_columns": table.columns}
    if table.rows is not None:
        definition_metadata["expected_rows"] = table.rows
    if uci_source is not None:
        definition_metadata["source"] = uci_source.location_of(table.filename)

    @asset(name=table.asset, group_name=RAW_GROUP, kinds={"pandas"}, metadata=definition_metadata,
           description=f"`{table.filename}` from the UCI source: {table.description}.")
    def raw_table(context: AssetExecutionContext, uci_source: UciSource) -> MaterializeResult:
        fetched = uci_source.fetch(table.filename, log=context.log)
        frame = read_uci_table(fetched.content, table, fetched.origin)
        refuse_unusable(frame, table, fetched.origin)
        context.log.info(f"{table.filename}: {frame.shape[0]} x {frame.shape[1]} from {fetched.origin}")
        metadata = table_metadata(frame)
        if table.is_dictionary:
            # Read as latin-1 (for the byte-identical copy), shown as the cp1252 it is.
            metadata["preview"] = preview(as_cp1252(frame), rows=10)
        return MaterializeResult(value=frame, metadata={
            **metadata,
            "source": fetched.origin,
            "from_cache": fetched.from_cache,
            "sha256": hashlib.sha256(fetched.content).hexdigest(),
        })

    return raw_table


def refuse_unusable(frame: pd.DataFrame, table: UciTable, origin: str) -> None:
    """Refuse here, before any S3 copy can be written, source content that a later step would
    refuse: a dictionary that does not parse or lacks features or value labels, a table whose row
    count is not the published one. The raw asset then fails, so every copy downstream is skipped
    and S3 keeps the last good copies."""
    if table.is_dictionary:
        usable_dictionary(text_of_dictionary_table(frame), origin)
        return
    problems = row_count_problems(frame, table, origin)
    if problems:
        raise BadInputError(f"{problems[0]}: not copied to S3 (S3 keeps the last good copy)")


def raw_table_assets(uci_source: UciSource | None = None) -> list[AssetsDefinition]:
    return [raw_table_asset(table, uci_source) for table in UCI_TABLES]


@asset(group_name=RAW_GROUP, kinds={"pandas"}, metadata={"expected_features": UCI_FEATURES, "expected_value_tables": "L0-L4"})
def data_dictionary(dictionary_text: pd.DataFrame) -> MaterializeResult:
    """dictionary.txt as data: 86 features (name, description, domain, value table) and the
    value-label tables L0-L4."""
    dictionary = parse_dictionary(text_of_dictionary_table(dictionary_text))
    return MaterializeResult(value=dictionary, metadata={
        **table_metadata(dictionary.features),
        "preview": preview(dictionary.features[["nr", "name", "description", "domain", "value_table"]], rows=10),
        "value_tables": MetadataValue.json({name: len(frame) for name, frame in dictionary.value_tables.items()}),
    })


def _cp1252(text: str) -> str:
    return text.encode("latin-1").decode("cp1252", errors="replace")


def as_cp1252(table: pd.DataFrame) -> pd.DataFrame:
    """The dictionary table (read as latin-1) with the text as the file means it: cp1252's
    dashes instead of the C1 control characters latin-1 makes of them."""
    header = _cp1252(str(table.columns[0]))
    return pd.DataFrame({header: table.iloc[:, 0].astype(str).map(_cp1252)})


def text_of_dictionary_table(table: pd.DataFrame) -> str:
    """The dictionary's text back from the raw table (read as latin-1), with cp1252's dashes."""
    readable = as_cp1252(table)
    return "\n".join([str(readable.columns[0]), *readable.iloc[:, 0]])
