"""Analysis of what is in S3: the listing of the prefix, the file map, the loaded frames and
the modelling table."""

import csv
import re
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
    load_value_snippet,
    location_metadata,
    preview,
    rate_chart,
    table_metadata,
)
from s3_assets.defs.resources import (
    S3Prefix,
    project_path,
    validate_bucket_name,
)
from s3_assets.defs.s3_copies.assets import S3_COPY_KEYS
from s3_assets.lib.changes import state_digest, state_of
from s3_assets.lib.dictionary import DataDictionary, labelled, type_by_domain
from s3_assets.lib.errors import ConfigError
from s3_assets.lib.exports import EXPORTS_AREA, write_export, write_local_export
from s3_assets.lib.file_map import FileMapRules, keys_under_prefix, select_data_files
from s3_assets.lib.listing import list_objects, ls_lines, ls_recursive_lines, subfolders
from s3_assets.lib.loading import load_frames
from s3_assets.lib.source import UCI_TABLES
from s3_assets.lib.text import printable

ANALYSIS_GROUP = "analysis"


class FileMapConfig(Config):
    max_depth: int = Field(default=1, description="0: directly under the prefix; 1: raw/ (leaves out raw/metadata/)")
    extensions: list[str] = Field(default=["csv"], description="allowed extensions, without the dot")


EXPORTS_DIR = ".s3-assets/exports"  # the one local folder exports go to (relative: from the project root)
ENCODING_COLUMN = "text_encoding"
# Characters that break or start a line for some reader (C0/C1 controls, DEL, NEL, the Unicode
# line and paragraph separators) or reorder what a reader sees (bidi controls), and '%', so
# that the encoding below is reversible.
_LINE_UNSAFE = re.compile("[%\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# A field a spreadsheet evaluates as a formula (CSV injection) starts with one of these
# (OWASP's list; tab and CR are controls above anyway): in such a row the leading character is
# percent-encoded too (`%3D`, `%2B`, `%2D`, `%40`), so the key is still `unquote`'s to give back.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")



class ListingConfig(Config):
    export_csv: str = Field(
        default="",
        description=f"also write the listing as CSV: a file name under `{EXPORTS_DIR}/` (a new file, or one "
                    f"an earlier export wrote), or `s3://bucket/{EXPORTS_AREA}<name>` (a new object, or one an earlier "
                    f"export wrote; S3 exports go only under `{EXPORTS_AREA}`, no data prefix may lie there)",
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
        # the listed root (not `dagster/uri`: the listing's data is its stored value): a cleanup
        # records the listing's state only for a prefix it touched
        "listed_prefix": MetadataValue.text(s3_prefix.uri(root)),
        "total_bytes": int(listing["size"].sum()),
        "folder_markers": int(listing["is_folder"].sum()),
        "subfolders": printable(", ".join(subfolders(listing, root))) or "(none)",
        # preview() escapes the keys' control characters (outside text)
        "preview": preview(listing, rows=10, columns=LISTING_PREVIEW_COLUMNS),
        "aws s3 ls": code_block(ls_lines(listing, root)),
        "aws s3 ls --recursive": code_block(ls_recursive_lines(listing)),
        # what the change sensor compares with, so that it does not count the project's own writes
        "state_digest": state_digest(state_of(listing["key"], listing["etag"], listing["size"])),
        **location_metadata(s3_prefix),
    }
    if config.export_csv:
        metadata["exported_to"] = export_listing(listing, config.export_csv, s3_prefix)
    return MaterializeResult(value=listing, metadata=metadata)


def export_listing(listing: pd.DataFrame, target: str, s3_prefix: S3Prefix) -> str:
    """Write the listing as CSV (`listing_csv`) to a file of the project's exports folder or
    to an S3 key in a bucket's exports area (`lib.exports`); anything else is refused, naming
    why. The target is set from outside (run config, the UI): it is data."""
    _refuse_invalid_text(target)
    body = listing_csv(listing)
    if target.lower().startswith("s3:"):
        return _export_to_s3(body, target, s3_prefix)
    if "://" in target:
        raise ConfigError(f"export_csv {printable(target)!r}: only s3://bucket/{EXPORTS_AREA}<name> or a file "
                          f"name under {EXPORTS_DIR}/")
    return _export_local(body, target)


def _refuse_invalid_text(target: str) -> bytes:
    """The target as UTF-8; a lone surrogate names nothing anyone could read back as text."""
    try:
        return target.encode()
    except UnicodeError:
        shown = target.encode("utf-8", "backslashreplace").decode()
        raise ConfigError(f"export_csv {printable(shown)!r}: it is not valid text for a file name or key") from None


def _percent(text: str) -> str:
    encoded = _LINE_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)
    return f"%{ord(encoded[0]):02X}{encoded[1:]}" if encoded.startswith(FORMULA_START) else encoded


def _unsafe(value: object) -> bool:
    """A text that must be encoded: it holds a control character, or starts a formula."""
    return isinstance(value, str) and (bool(_LINE_UNSAFE.search(value.replace("%", "")))
                                       or value.startswith(FORMULA_START))


def listing_csv(listing: pd.DataFrame) -> bytes:
    """The listing as CSV in which no key can start a line of its own nor be read as a formula:
    in a row whose text holds a control character or starts with `=`, `+`, `-`, `@` (tab, CR),
    every text field is percent-encoded (only '%', those characters and such a leading
    character; `text_encoding` says `url`) and `urllib.parse.unquote` gives the key back; other
    rows are written as they are (`text_encoding` empty)."""
    frame = listing.copy()
    text_columns = [c for c in frame.columns
                    if pd.api.types.is_object_dtype(frame[c]) or pd.api.types.is_string_dtype(frame[c])]
    unsafe = [any(_unsafe(v) for v in row)
              for row in zip(*(frame[c].tolist() for c in text_columns), strict=True)] if text_columns else []
    if not unsafe:
        unsafe = [False] * len(frame)
    for column in text_columns:
        frame[column] = [_percent(v) if bad and isinstance(v, str) else v
                         for v, bad in zip(frame[column].tolist(), unsafe, strict=True)]
    frame[ENCODING_COLUMN] = ["url" if bad else "" for bad in unsafe]
    return frame.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode()


def _export_to_s3(body: bytes, target: str, s3_prefix: S3Prefix) -> str:
    """`s3://bucket/key` in any bucket, the key under the bucket's exports area as the server
    stores it (`lib.exports.write_export`: only there, never over an object the project did
    not write)."""
    if not target.startswith("s3://"):
        raise ConfigError(f"export_csv {printable(target)!r}: write S3 targets as s3://bucket/{EXPORTS_AREA}<name>")
    bucket, _, raw_key = target[len("s3://"):].partition("/")
    validate_bucket_name(bucket)
    if _LINE_UNSAFE.search(raw_key.replace("%", "")):
        raise ConfigError(f"export_csv {printable(target)!r}: the key holds a control character")
    return write_export(s3_prefix.connect(), bucket, raw_key, body, target=target, extra_args=s3_prefix.write_args())


def _export_local(body: bytes, target: str) -> str:
    """A file under the exports folder (`lib.exports.write_local_export`), its name checked
    first: a name no file system takes is refused before any file call."""
    _refuse_unusable_name(target)
    return write_local_export(body, target, project_path(EXPORTS_DIR))


def _refuse_unusable_name(target: str) -> None:
    """A local name no file system takes (NUL, a control character) or that is
    too long for one (a part over 200 bytes, the whole over 4,096) is refused by name, before
    any file call."""
    why = ""
    encoded = _refuse_invalid_text(target)
    if b"\x00" in encoded:
        why = "it holds a NUL byte"
    elif _LINE_UNSAFE.search(target.replace("%", "")):
        why = "it holds a control character"
    elif any(len(part) > 200 for part in encoded.split(b"/")):
        why = ("a part of it is longer than 200 bytes (file systems take 255, and an export needs room for "
               "its temporary file's name)")
    elif len(encoded) > 4096:
        why = "it is longer than 4,096 bytes, the longest path the system takes"
    if why:
        raise ConfigError(f"export_csv {printable(target)!r}: {why}; local exports go to a file under "
                          f"{EXPORTS_DIR}/ (a name like `files.csv`)")


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
    # Only objects under the data prefix, whatever produced the map (a planted stored value too).
    keys = keys_under_prefix(file_map, s3_prefix.resolved_bucket(), s3_prefix.root)
    sizes = dict(zip(s3_listing["key"], s3_listing["size"], strict=True))
    frames = load_frames(s3_prefix.connect(), s3_prefix.resolved_bucket(), keys, sizes,
                         max_workers=config.max_workers, max_bytes=config.max_bytes,
                         botocore_only=bool(s3_prefix.bucket_owner()), origin=s3_prefix.s3.client_origin(),
                         progress=context.log.info)
    frames = {name: type_by_domain(name_columns(name, frame, data_dictionary), data_dictionary)
              for name, frame in frames.items()}
    # One row per frame: a row count or schema of the dict as a whole would add up or pick
    # frames that do not belong together.
    metadata: dict[str, Any] = {"frames": frames_table(frames), "read_in_a_notebook": load_value_snippet(
        "dataframes", "dict: name -> DataFrame (" + ", ".join(frames) + ")")}
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
    descriptions = {**data_dictionary.descriptions(), "split": "train (5822 rows) or test (4000 rows, with gt's CARAVAN)"}
    shown = [c for c in MODELLING_PREVIEW_COLUMNS if c in table.columns]
    # Rows of both splits, so the preview shows what the join put together.
    sample = pd.concat([table[table["split"] == split].head(3) for split in ("train", "test")])
    # What people would rather look at than read: who buys caravan insurance, by customer main type.
    chart = rate_chart(table, "MOSHOOFD", "CARAVAN", data_dictionary.labels("MOSHOOFD"),
                       "CARAVAN rate by customer main type")
    labelled_sample = labelled(sample, data_dictionary)
    if config.labelled:
        table = labelled(table, data_dictionary)
    return MaterializeResult(value=table, metadata={
        **table_metadata(table, descriptions),
        "preview": preview(sample, rows=len(sample), columns=shown),
        # The codes as the dictionary names them (MOSTYPE 33 -> "Lower class large families").
        "preview_labelled": preview(labelled_sample, rows=len(labelled_sample), columns=shown),
        "caravan_rate_by_main_type": chart,
        "read_in_a_notebook": load_value_snippet(
            "modelling_table", f"DataFrame, {len(table):,} x {table.shape[1]}: train above test, with `split`"),
        "rows_by_split": MetadataValue.json({str(k): int(v) for k, v in table["split"].value_counts().sort_index().items()}),
    })


ANALYSIS_ASSETS = [s3_listing, file_map, dataframes, modelling_table]
