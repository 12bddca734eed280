"""The asset graph: UCI files -> raw tables -> S3 copies -> listing -> file map -> DataFrames.

Raw tables and their S3 copies are made by one factory each over `UCI_TABLES`, so the four
files cannot drift apart. Everything S3-shaped goes through the `S3Location` resource.
"""


import hashlib
from pathlib import Path

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, AssetsDefinition, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from s3_assets.dictionary import DataDictionary, labelled, parse_dictionary, type_by_domain
from s3_assets.file_map import FileMapRules, build_file_map
from s3_assets.listing import list_objects, render_ls, render_ls_recursive, subfolders
from s3_assets.loading import load_frames
from s3_assets.metadata import column_schema, preview, table_metadata
from s3_assets.resources import S3Location
from s3_assets.settings import ConfigError
from s3_assets.uci import UCI_TABLES, UciSource, UciTable, read_uci_table
from s3_assets.uploading import upload_bytes

RAW_GROUP = "uci_raw"
S3_GROUP = "s3_copies"
ANALYSIS_GROUP = "analysis"


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


def s3_copy_asset(table: UciTable) -> AssetsDefinition:
    @asset(name=f"{table.copy_name}_csv", group_name=S3_GROUP, kinds={"s3", "csv"},
           ins={"frame": AssetIn(table.asset)},
           description=f"s3://<bucket>/<prefix>/{table.s3_relative}: the `{table.asset}` table as the notebook "
                       "wrote it (`to_csv(index=False)`).")
    def s3_copy(context: AssetExecutionContext, frame: pd.DataFrame, location: S3Location) -> MaterializeResult:
        body = frame.to_csv(index=False).encode()
        key = location.key(table.s3_relative)
        uploaded = upload_bytes(location.client, location.resolved_bucket(), key, body,
                                extra_args=location.write_args())
        context.log.info(f"{'wrote' if uploaded.changed else 'unchanged'}: {location.uri(key)} ({uploaded.size:,} bytes)")
        return MaterializeResult(metadata={
            "uri": MetadataValue.path(location.uri(key)),
            "size": uploaded.size,
            "etag": uploaded.etag,
            "md5": uploaded.md5,
            "uploaded": uploaded.changed,
            "dagster/row_count": len(frame),
            "open": MetadataValue.url(location.browse_url(key)),
        })

    return s3_copy


RAW_TABLE_ASSETS = [raw_table_asset(table) for table in UCI_TABLES]
S3_COPY_ASSETS = [s3_copy_asset(table) for table in UCI_TABLES]


class ListingConfig(Config):
    export_csv: str = Field(
        default="", description="also write the listing as CSV here (a local path, or s3:// outside the prefix)"
    )


@asset(group_name=ANALYSIS_GROUP, kinds={"s3", "pandas"}, deps=S3_COPY_ASSETS)
def s3_listing(context: AssetExecutionContext, config: ListingConfig, location: S3Location) -> MaterializeResult:
    """Every object under the prefix: key, size, last modified, ETag, storage class, folder or
    file, depth, name, extension and URI (the notebook's `files.csv`, complete at any size)."""
    bucket, root = location.resolved_bucket(), location.root
    listing = list_objects(location.client, bucket, root)
    context.log.info(f"{len(listing)} objects under {location.uri(root)}")
    metadata = {
        "dagster/row_count": len(listing),
        "dagster/column_schema": column_schema(listing),
        "total_bytes": int(listing["size"].sum()),
        "folder_markers": int(listing["is_folder"].sum()),
        "subfolders": ", ".join(subfolders(listing, root)) or "(none)",
        "preview": preview(listing.drop(columns=["uri"]), rows=10),
        "aws s3 ls": MetadataValue.md(f"```\n{render_ls(listing, root)}\n```"),
        "aws s3 ls --recursive": MetadataValue.md(f"```\n{render_ls_recursive(listing)}\n```"),
    }
    if config.export_csv:
        metadata["exported_to"] = export_listing(listing, config.export_csv, location)
    return MaterializeResult(value=listing, metadata=metadata)


def export_listing(listing: pd.DataFrame, target: str, location: S3Location) -> str:
    """Write the listing as CSV somewhere that is not under the listed prefix."""
    body = listing.to_csv(index=False).encode()
    if target.startswith("s3://"):
        bucket, _, key = target[len("s3://"):].partition("/")
        if bucket == location.resolved_bucket() and (location.root == "" or key.startswith(location.root)):
            raise ConfigError(f"export_csv {target!r} is under the listed prefix {location.uri(location.root)}: "
                              "it would list itself and be deleted by cleanup; choose another place")
        upload_bytes(location.client, bucket, key, body, extra_args=location.write_args())
        return target
    path = Path(target).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return str(path.resolve())


@asset(group_name=ANALYSIS_GROUP, kinds={"python"})
def file_map(context: AssetExecutionContext, config: FileMapRules, s3_listing: pd.DataFrame,
             location: S3Location) -> MaterializeResult:
    """name -> S3 URI of the data files in the listing, by explicit rules (files only, depth,
    extensions); two files with one name is an error naming both keys."""
    mapping = build_file_map(s3_listing, config)
    uris = {name: location.uri(key) for name, key in mapping.items()}
    context.log.info(f"{len(uris)} data files: {', '.join(uris)}")
    return MaterializeResult(value=uris, metadata={
        "files": len(uris),
        "map": MetadataValue.json(uris),
    })


@asset(group_name=RAW_GROUP, kinds={"pandas"})
def data_dictionary(columns: pd.DataFrame) -> MaterializeResult:
    """dictionary.txt as data: 86 features (name, description, domain, value table) and the
    value-label tables L0-L4."""
    dictionary = parse_dictionary(dictionary_text(columns))
    return MaterializeResult(value=dictionary, metadata={
        **table_metadata(dictionary.features),
        "preview": preview(dictionary.features[["nr", "name", "description", "domain", "value_table"]], rows=10),
        "value_tables": MetadataValue.json({name: len(frame) for name, frame in dictionary.value_tables.items()}),
    })


def dictionary_text(columns: pd.DataFrame) -> str:
    """The dictionary's text back from the raw table (read as latin-1), with cp1252's dashes."""
    lines = [str(columns.columns[0]), *columns.iloc[:, 0].astype(str)]
    return "\n".join(lines).encode("latin-1").decode("cp1252", errors="replace")


class LoadConfig(Config):
    max_workers: int = Field(default=8, description="concurrent downloads")
    max_bytes: int = Field(default=2 * 1024**3, description="largest file loaded into memory, in bytes")


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


@asset(group_name=ANALYSIS_GROUP, kinds={"pandas"})
def dataframes(context: AssetExecutionContext, config: LoadConfig, file_map: dict[str, str],
               s3_listing: pd.DataFrame, data_dictionary: DataDictionary,
               location: S3Location) -> MaterializeResult:
    """name -> DataFrame for every file in the file map (train, test, gt), parsed as CSV with
    compact integer types and the dictionary's column names."""
    keys = {name: location.key_from_uri(uri) for name, uri in file_map.items()}
    sizes = dict(zip(s3_listing["key"], s3_listing["size"], strict=True))
    frames = load_frames(location.client, location.resolved_bucket(), keys, sizes,
                         max_workers=config.max_workers, max_bytes=config.max_bytes, progress=context.log.info)
    frames = {name: type_by_domain(name_columns(name, frame, data_dictionary), data_dictionary)
              for name, frame in frames.items()}
    descriptions = data_dictionary.descriptions()
    widest = max(frames.values(), key=lambda f: f.shape[1]) if frames else pd.DataFrame()
    metadata = {
        "dagster/row_count": sum(len(frame) for frame in frames.values()),
        "dagster/column_schema": column_schema(widest, descriptions),
        "frames": MetadataValue.md("\n".join(
            ["| name | rows | columns | memory (bytes) |", "|---|---|---|---|"]
            + [f"| {n} | {len(f)} | {f.shape[1]} | {int(f.memory_usage(deep=True).sum())} |" for n, f in frames.items()]
        )),
    }
    for name, frame in frames.items():
        metadata[f"{name}_shape"] = f"{frame.shape[0]} x {frame.shape[1]}"
        metadata[f"{name}_memory_bytes"] = int(frame.memory_usage(deep=True).sum())
    return MaterializeResult(value=frames, metadata=metadata)


class ModellingConfig(Config):
    labelled: bool = Field(default=False, description="coded columns as labelled categoricals (e.g. MOSTYPE)")


@asset(group_name=ANALYSIS_GROUP, kinds={"pandas"})
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
    return MaterializeResult(value=table, metadata={
        **table_metadata(table, data_dictionary.descriptions()),
        "rows_by_split": MetadataValue.json(table["split"].value_counts().sort_index().to_dict()),
    })


ASSETS = [*RAW_TABLE_ASSETS, *S3_COPY_ASSETS, s3_listing, file_map, data_dictionary, dataframes, modelling_table]
