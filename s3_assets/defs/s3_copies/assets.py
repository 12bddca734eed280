"""The S3 copies of the raw tables under the prefix's `raw/`, byte-identical to the notebook's
`to_csv(index=False)`.

The factory takes the configured `S3Prefix` when the definitions load, so the catalog shows each
copy's real URI before any run (`dagster/uri`), not a `<bucket>` placeholder that markdown
would swallow as an HTML tag."""

from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from s3_assets.defs.metadata import code_span, location_metadata, read_copy_snippet
from s3_assets.defs.raw_uci.assets import text_of_dictionary_table
from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.dictionary import DictionaryError, usable_dictionary
from s3_assets.lib.source import UCI_TABLES, BadInputError, UciTable
from s3_assets.lib.uploading import upload_bytes
from s3_assets.lib.validation import raw_table_problems, related_tables, relation_problems, row_count_problems

S3_GROUP = "s3_copies"
# Sizes in bytes of the copies of the real UCI files (the notebook's, and this project's).
UCI_COPY_SIZES = {"train": 1_006_399, "test": 683_549, "ground_truth": 8_002, "dictionary_text": 4_823}


def s3_copy_asset(table: UciTable, s3_prefix: S3Prefix | None = None) -> AssetsDefinition:
    """The copy of `table`; with `s3_prefix`, its URI is in the description and metadata."""
    where = s3_prefix.declared_uri(s3_prefix.key(table.s3_relative)) if s3_prefix else None
    shown = where or f"s3://{{bucket}}/{{prefix}}/{table.s3_relative}"
    definition_metadata: dict[str, Any] = {"uci_release_size_bytes": UCI_COPY_SIZES[table.asset]}
    if where and "{" not in where:
        definition_metadata["dagster/uri"] = where
    # The data tables are checked against the dictionary again right before the write, so that
    # no selection (say `train_csv` alone, re-copying a stored table that failed its `values`
    # check) can put bad data over the last good copy.
    # Likewise a table whose rows must line up with another's (test and ground truth) is copied
    # only together with a partner it agrees with.
    ins = {"frame": AssetIn(table.asset)}
    if not table.is_dictionary:
        ins["data_dictionary"] = AssetIn("data_dictionary")
    partners = {other: next(t for t in UCI_TABLES if t.asset == other) for other in related_tables(table.asset)}
    ins.update({f"partner_{other}": AssetIn(other) for other in partners})

    @asset(name=f"{table.copy_name}_csv", group_name=S3_GROUP, kinds={"s3", "csv"}, ins=ins,
           metadata=definition_metadata,
           description=f"{code_span(shown)}: the `{table.asset}` table as the notebook wrote it "
                       f"(`to_csv(index=False)`; {UCI_COPY_SIZES[table.asset]:,} bytes from the real UCI file).")
    def s3_copy(context: AssetExecutionContext, s3_prefix: S3Prefix, **inputs: Any) -> MaterializeResult:
        frame: pd.DataFrame = inputs["frame"]
        if table.is_dictionary:  # the stored raw table again, as the raw asset judged its source
            try:
                usable_dictionary(text_of_dictionary_table(frame), table.filename)
            except DictionaryError as error:
                raise BadInputError(f"{table.filename} is not copied to {s3_prefix.uri(s3_prefix.key(table.s3_relative))} "
                                    f"(S3 keeps the last good copy): {error}") from None
        if "data_dictionary" in inputs:
            problems = row_count_problems(frame, table) + raw_table_problems(frame, table, inputs["data_dictionary"])
            problems += relation_problems({table.asset: frame, **{other: inputs[f"partner_{other}"] for other in partners}},
                                          {table.asset: table, **partners})
            if problems:
                raise BadInputError(f"{table.filename} is not copied to {s3_prefix.uri(s3_prefix.key(table.s3_relative))} "
                                    f"(S3 keeps the last good copy): {'; '.join(problems[:10])}")
        body = frame.to_csv(index=False).encode()
        key = s3_prefix.key(table.s3_relative)
        client = s3_prefix.connect()
        hold = s3_prefix.run_hold()  # this run's lock note: the PUT goes only while its lease is live
        uploaded = upload_bytes(client, s3_prefix.resolved_bucket(), key, body, extra_args=s3_prefix.write_args(),
                                before_write=None if hold is None else hold.check_before)
        context.log.info(f"{'wrote' if uploaded.changed else 'unchanged'}: {s3_prefix.uri(key)} ({uploaded.size:,} bytes)")
        return MaterializeResult(metadata={
            "dagster/uri": MetadataValue.text(s3_prefix.uri(key)),  # copyable text: an s3:// link opens nothing
            "size_bytes": uploaded.size,
            "etag": uploaded.etag,
            "md5": uploaded.md5,
            "sha256": uploaded.sha256,
            "uploaded": uploaded.changed,
            "dagster/row_count": len(frame),
            **s3_prefix.browse_metadata(key),
            **location_metadata(s3_prefix),  # the endpoint for a local or custom S3 (no credential)
            "read_in_a_notebook": read_copy_snippet(s3_prefix, key),
        })

    return s3_copy


def s3_copy_assets(s3_prefix: S3Prefix | None = None) -> list[AssetsDefinition]:
    return [s3_copy_asset(table, s3_prefix) for table in UCI_TABLES]


# The copies' keys, for what depends on them (a module-level list of the assets themselves would
# be loaded from the defs folder beside the configured ones in `defs.py`).
S3_COPY_KEYS = [AssetKey(f"{table.copy_name}_csv") for table in UCI_TABLES]
