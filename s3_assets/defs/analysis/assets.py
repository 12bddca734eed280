"""Analysis of what is in S3: the listing of the prefix, the file map, the loaded frames and
the modelling table."""


from pathlib import Path
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from s3_assets.defs.metadata import (
    LISTING_COLUMNS,
    LISTING_PREVIEW_COLUMNS,
    code_block,
    column_schema,
    frames_table,
    preview,
    table_metadata,
)
from s3_assets.defs.resources import S3Prefix
from s3_assets.defs.s3_copies.assets import S3_COPY_KEYS
from s3_assets.lib.changes import state_digest, state_of
from s3_assets.lib.dictionary import DataDictionary, labelled, type_by_domain
from s3_assets.lib.errors import ConfigError
from s3_assets.lib.file_map import FileMapRules, select_data_files
from s3_assets.lib.listing import list_objects, ls_lines, ls_recursive_lines, subfolders
from s3_assets.lib.loading import load_frames
from s3_assets.lib.source import UCI_TABLES
from s3_assets.lib.text import printable
from s3_assets.lib.uploading import upload_bytes

ANALYSIS_GROUP = "analysis"


class FileMapConfig(Config):
    max_depth: int = Field(default=1, description="0: directly under the prefix; 1: raw/ (leaves out raw/metadata/)")
    extensions: list[str] = Field(default=["csv"], description="allowed extensions, without the dot")


class ListingConfig(Config):
    export_csv: str = Field(
        default="", description="also write the listing as CSV here (a local path, or s3:// outside the prefix)"
    )


@asset(group_name=ANALYSIS_GROUP, kinds={"s3", "pandas"}, deps=S3_COPY_KEYS)
def s3_listing(context: AssetExecutionContext, config: ListingConfig, s3_prefix: S3Prefix) -> MaterializeResult:
    """Every object under the prefix: key, size, last modified, ETag, storage class, folder or
    file, depth, name, extension and URI (the notebook's `files.csv`, complete at any size)."""
    bucket, root = s3_prefix.resolved_bucket(), s3_prefix.root
    listing = list_objects(s3_prefix.connect(), bucket, root)
    context.log.info(f"{len(listing)} objects under {printable(s3_prefix.uri(root))}")
    metadata: dict[str, Any] = {
        "dagster/row_count": len(listing),
        "dagster/column_schema": column_schema(listing, LISTING_COLUMNS),
        "total_bytes": int(listing["size"].sum()),
        "folder_markers": int(listing["is_folder"].sum()),
        "subfolders": printable(", ".join(subfolders(listing, root))) or "(none)",
        # preview() escapes the keys' control characters (outside text)
        "preview": preview(listing, rows=10, columns=LISTING_PREVIEW_COLUMNS),
        "aws s3 ls": code_block(ls_lines(listing, root)),
        "aws s3 ls --recursive": code_block(ls_recursive_lines(listing)),
        # what the change sensor compares with, so that it does not count the project's own writes
        "state_digest": state_digest(state_of(listing["key"], listing["etag"], listing["size"])),
    }
    if config.export_csv:
        metadata["exported_to"] = export_listing(listing, config.export_csv, s3_prefix)
    return MaterializeResult(value=listing, metadata=metadata)


def export_listing(listing: pd.DataFrame, target: str, s3_prefix: S3Prefix) -> str:
    """Write the listing as CSV somewhere that is not under the listed prefix."""
    body = listing.to_csv(index=False).encode()
    if target.startswith("s3://"):
        bucket, _, key = target[len("s3://"):].partition("/")
        if bucket == s3_prefix.resolved_bucket() and (s3_prefix.root == "" or key.startswith(s3_prefix.root)):
            raise ConfigError(f"export_csv {target!r} is under the listed prefix {s3_prefix.uri(s3_prefix.root)}: "
                              "it would list itself and be deleted by cleanup; choose another place")
        upload_bytes(s3_prefix.connect(), bucket, key, body, extra_args=s3_prefix.write_args())
        return target
    path = Path(target).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return str(path.resolve())


@asset(group_name=ANALYSIS_GROUP, kinds={"python"})
def file_map(context: AssetExecutionContext, config: FileMapConfig, s3_listing: pd.DataFrame,
             s3_prefix: S3Prefix) -> MaterializeResult:
    """name -> S3 URI of the data files in the listing, by explicit rules (files only, depth,
    extensions); two files with one name is an error naming both keys."""
    mapping, unnamed = select_data_files(s3_listing, FileMapRules(config.max_depth, tuple(config.extensions)))
    uris = {name: s3_prefix.uri(key) for name, key in mapping.items()}
    context.log.info(f"{len(uris)} data files: {', '.join(uris)}")
    metadata: dict[str, Any] = {"files": len(uris), "map": MetadataValue.json(uris), "unnamed_files": len(unnamed)}
    if unnamed:
        shown = [printable(key) for key in unnamed]
        context.log.warning(f"{len(unnamed)} data file(s) the rules select but cannot name (a name needs "
                            f"printable characters only); not in the map: {', '.join(shown[:20])}")
        metadata["unnamed"] = code_block(unnamed[:50])  # code_block escapes
    return MaterializeResult(value=uris, metadata=metadata)


class LoadConfig(Config):
    max_workers: int = Field(default=32, description="concurrent downloads (they wait on the network, not the CPU)")
    max_bytes: int = Field(default=2 * 1024**3, description="largest file loaded, in bytes; loading needs up to "
                           "2.5 x a file's size in memory")


def name_columns(name: str, frame: pd.DataFrame, dictionary: DataDictionary) -> pd.DataFrame:
    """Give the positional columns ('0', '1', ...) of a UCI copy their dictionary names."""
    table = next((t for t in UCI_TABLES if t.copy_name == name and not t.is_dictionary), None)
    positional = [str(i) for i in range(frame.shape[1])]
    if table is None or [str(c) for c in frame.columns] != positional:
        return frame
    names = dictionary.names
    chosen = names[-1:] if frame.shape[1] == 1 else names[: frame.shape[1]]
    if len(chosen) != frame.shape[1]:
        raise ValueError(f"{name}: {frame.shape[1]} columns, but the dictionary names {len(names)}")
    frame.columns = chosen
    return frame


@asset(group_name=ANALYSIS_GROUP, kinds={"pandas"},
       metadata={"expected_frames": MetadataValue.json({"train": [5822, 86], "test": [4000, 85], "gt": [4000, 1]})})
def dataframes(context: AssetExecutionContext, config: LoadConfig, file_map: dict[str, str],
               s3_listing: pd.DataFrame, data_dictionary: DataDictionary,
               s3_prefix: S3Prefix) -> MaterializeResult:
    """name -> DataFrame for every file in the file map (train, test, gt), parsed as CSV with
    compact integer types and the dictionary's column names."""
    keys = {name: s3_prefix.key_from_uri(uri) for name, uri in file_map.items()}
    sizes = dict(zip(s3_listing["key"], s3_listing["size"], strict=True))
    frames = load_frames(s3_prefix.connect(), s3_prefix.resolved_bucket(), keys, sizes,
                         max_workers=config.max_workers, max_bytes=config.max_bytes,
                         botocore_only=bool(s3_prefix.bucket_owner()), origin=s3_prefix.s3.client_origin(),
                         progress=context.log.info)
    frames = {name: type_by_domain(name_columns(name, frame, data_dictionary), data_dictionary)
              for name, frame in frames.items()}
    # One row per frame: a row count or schema of the dict as a whole would add up or pick
    # frames that do not belong together.
    metadata: dict[str, Any] = {"frames": frames_table(frames)}
    descriptions = data_dictionary.descriptions()
    for name, frame in frames.items():
        metadata[f"{name} schema"] = MetadataValue.table_schema(column_schema(frame, descriptions))
    return MaterializeResult(value=frames, metadata=metadata)


class ModellingConfig(Config):
    labelled: bool = Field(default=False, description="coded columns as labelled categoricals (e.g. MOSTYPE)")


# What people look for first in the modelling table: the split and the target, then the
# customer's main descriptors.
MODELLING_PREVIEW_COLUMNS = ["split", "CARAVAN", "MOSTYPE", "MOSHOOFD", "MGEMLEEF", "MAANTHUI", "MGEMOMV"]


@asset(group_name=ANALYSIS_GROUP, kinds={"pandas"}, metadata={"expected_rows": 9822, "expected_columns": 87})
def modelling_table(config: ModellingConfig, dataframes: dict[str, pd.DataFrame],
                    data_dictionary: DataDictionary) -> MaterializeResult:
    """train (5822 x 86) above test joined with its ground truth (4000 x 86), with a `split`
    column: the table the next notebook of the series models on."""
    missing = {"train", "test", "gt"} - set(dataframes)
    if missing:
        raise ValueError(f"modelling_table needs train, test and gt; the file map has no {sorted(missing)}")
    train, test, truth = dataframes["train"], dataframes["test"], dataframes["gt"]
    if len(test) != len(truth):
        raise ValueError(f"test has {len(test)} rows but gt has {len(truth)}: they cannot be joined")
    joined = pd.concat([test.reset_index(drop=True), truth.reset_index(drop=True)], axis=1)
    table = pd.concat([train.assign(split="train"), joined.assign(split="test")], ignore_index=True)
    table["split"] = table["split"].astype("category")
    table = type_by_domain(table, data_dictionary)
    if config.labelled:
        table = labelled(table, data_dictionary)
    descriptions = {**data_dictionary.descriptions(), "split": "train (5822 rows) or test (4000 rows, with gt's CARAVAN)"}
    shown = [c for c in MODELLING_PREVIEW_COLUMNS if c in table.columns]
    # Rows of both splits, so the preview shows what the join put together.
    sample = pd.concat([table[table["split"] == split].head(3) for split in ("train", "test")])
    return MaterializeResult(value=table, metadata={
        **table_metadata(table, descriptions),
        "preview": preview(sample, rows=len(sample), columns=shown),
        "rows_by_split": MetadataValue.json({str(k): int(v) for k, v in table["split"].value_counts().sort_index().items()}),
    })


ANALYSIS_ASSETS = [s3_listing, file_map, dataframes, modelling_table]
