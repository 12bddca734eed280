"""The raw UCI tables, read as the notebook read them, and the data dictionary as data."""


import hashlib

import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, MaterializeResult, MetadataValue, asset

from s3_assets.defs.metadata import preview, table_metadata
from s3_assets.defs.resources import UciSource
from s3_assets.lib.dictionary import parse_dictionary
from s3_assets.lib.source import UCI_TABLES, UciTable, read_uci_table

RAW_GROUP = "uci_raw"


def raw_table_asset(table: UciTable) -> AssetsDefinition:
    @asset(name=table.asset, group_name=RAW_GROUP, kinds={"pandas"},
           description=f"{table.filename} from the UCI source: {table.description}.")
    def raw_table(context: AssetExecutionContext, uci_source: UciSource) -> MaterializeResult:
        fetched = uci_source.fetch(table.filename)
        frame = read_uci_table(fetched.content, table, fetched.origin)
        context.log.info(f"{table.filename}: {frame.shape[0]} x {frame.shape[1]} from {fetched.origin}")
        return MaterializeResult(value=frame, metadata={
            **table_metadata(frame),
            "source": fetched.origin,
            "from_cache": fetched.from_cache,
            "sha256": hashlib.sha256(fetched.content).hexdigest(),
        })

    return raw_table


RAW_TABLE_ASSETS = [raw_table_asset(table) for table in UCI_TABLES]


@asset(group_name=RAW_GROUP, kinds={"pandas"})
def data_dictionary(dictionary_text: pd.DataFrame) -> MaterializeResult:
    """dictionary.txt as data: 86 features (name, description, domain, value table) and the
    value-label tables L0-L4."""
    dictionary = parse_dictionary(text_of_dictionary_table(dictionary_text))
    return MaterializeResult(value=dictionary, metadata={
        **table_metadata(dictionary.features),
        "preview": preview(dictionary.features[["nr", "name", "description", "domain", "value_table"]], rows=10),
        "value_tables": MetadataValue.json({name: len(frame) for name, frame in dictionary.value_tables.items()}),
    })


def text_of_dictionary_table(table: pd.DataFrame) -> str:
    """The dictionary's text back from the raw table (read as latin-1), with cp1252's dashes."""
    lines = [str(table.columns[0]), *table.iloc[:, 0].astype(str)]
    return "\n".join(lines).encode("latin-1").decode("cp1252", errors="replace")
