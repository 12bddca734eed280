"""Listing every object under a prefix into a table, however many there are.

The notebook's single `list_objects_v2` call stops at 1,000 keys; here botocore's paginator
walks all pages. botocore spends ~85 % of a listing turning each page's XML into per-object
dicts and datetimes, so a `before-parse` hook takes the `<Contents>` elements out of the raw
body first and reads them straight into column lists with ElementTree; botocore still signs,
retries, raises errors and parses the rest of the page (continuation token, truncation).
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from botocore.compat import unquote_str

from s3_assets.lib.errors import describe_client_error

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
CONTENTS = re.compile(rb"<Contents>.*?</Contents>", re.DOTALL)
_columns_wanted = threading.local()  # set only inside list_objects, in its own thread


class PageColumns:
    """Arrow arrays filled page by page from raw ListObjectsV2 bodies: only one page's worth of
    Python strings exists at a time, so memory stays near the final table's size."""

    def __init__(self) -> None:
        self.chunks: list[pa.RecordBatch] = []

    def add_page(self, body: bytes) -> None:
        root = ET.fromstring(body)
        url_encoded = root.findtext(f"{S3_NS}EncodingType") == "url"
        keys, sizes, modified, etags, classes = [], [], [], [], []
        for item in root.iter(f"{S3_NS}Contents"):
            key = item.findtext(f"{S3_NS}Key")
            keys.append(unquote_str(key) if url_encoded else key)
            sizes.append(int(item.findtext(f"{S3_NS}Size")))
            modified.append(item.findtext(f"{S3_NS}LastModified"))
            etags.append((item.findtext(f"{S3_NS}ETag") or "").strip('"'))
            classes.append(item.findtext(f"{S3_NS}StorageClass") or "STANDARD")
        if keys:
            self.chunks.append(page_batch(keys, sizes, modified, etags, classes))

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.chunks, schema=RAW_SCHEMA)


RAW_SCHEMA = pa.schema([("key", pa.string()), ("size", pa.int64()), ("last_modified", pa.timestamp("us", tz="UTC")),
                        ("etag", pa.string()), ("storage_class", pa.dictionary(pa.int8(), pa.string()))])


def page_batch(keys, sizes, modified, etags, classes) -> pa.RecordBatch:
    """One page as Arrow columns; Arrow parses the ISO 8601 LastModified strings."""
    stamps = pa.array(modified).cast(pa.timestamp("us", tz="UTC"))
    return pa.RecordBatch.from_arrays([
        pa.array(keys, pa.string()), pa.array(sizes, pa.int64()), stamps, pa.array(etags, pa.string()),
        pa.array(classes, pa.string()).dictionary_encode().cast(pa.dictionary(pa.int8(), pa.string())),
    ], schema=RAW_SCHEMA)


def _take_contents(response_dict: dict, customized_response_dict: dict, **kwargs: Any) -> None:
    """botocore `before-parse` hook: move <Contents> into columns, leave botocore the rest."""
    columns = getattr(_columns_wanted, "columns", None)
    if columns is None or response_dict.get("status_code", 500) >= 300:
        return
    body = response_dict["body"]
    columns.add_page(body)
    response_dict["body"] = CONTENTS.sub(b"", body)


LISTING_COLUMNS = [
    "key", "size", "last_modified", "etag", "storage_class", "is_folder",
    "depth", "name", "extension", "uri",
]


def list_objects(client: Any, bucket: str, root: str, *, parallelism: int = 8, page_size: int = 1000) -> pd.DataFrame:
    """Every object whose key starts with `root` ('' or ending in '/'), as a table sorted by key.

    `parallelism`: how many parts of the key space may be listed at once (1: one paginator)."""
    columns = PageColumns()
    client.meta.events.register("before-parse.s3.ListObjectsV2", _take_contents, unique_id="s3_assets.listing")
    _columns_wanted.columns = columns
    try:
        paginator = client.get_paginator("list_objects_v2")
        for _page in paginator.paginate(Bucket=bucket, Prefix=root, PaginationConfig={"PageSize": page_size}):
            pass
    except Exception as error:
        raise describe_client_error(error, bucket=bucket, key=root, endpoint=client.meta.endpoint_url) from None
    finally:
        _columns_wanted.columns = None
    return listing_frame(bucket, root, columns.table())



def listing_frame(bucket: str, root: str, raw: pa.Table) -> pd.DataFrame:
    """Derive the per-key columns (folder marker, depth, name, extension, URI) in Arrow."""
    key, size = raw["key"], raw["size"]
    relative = pc.utf8_slice_codeunits(key, len(root))
    is_folder = pc.and_(pc.ends_with(key, "/"), pc.equal(size, 0))
    trimmed = pc.utf8_rtrim(relative, "/")
    name = pc.replace_substring_regex(trimmed, r"^.*/", "")
    extension = pc.utf8_lower(pc.replace_substring_regex(name, r"^(?:[^.]*$|.*\.)", ""))
    extension = pc.if_else(is_folder, "", extension)
    table = pa.table({
        "key": key, "size": size, "last_modified": raw["last_modified"], "etag": raw["etag"],
        "storage_class": raw["storage_class"], "is_folder": is_folder,
        "depth": pc.cast(pc.count_substring(trimmed, "/"), pa.int64()), "name": name, "extension": extension,
        "uri": pc.binary_join_element_wise(f"s3://{bucket}/", key, ""),
    })
    return table.to_pandas(types_mapper=_pandas_types)


def _pandas_types(arrow_type: pa.DataType):
    return pd.StringDtype("pyarrow") if arrow_type == pa.string() else None


def frame_from_rows(bucket: str, root: str, keys, sizes, modified, etags, classes) -> pd.DataFrame:
    """The listing table from plain lists (for callers that already have the objects)."""
    raw = pa.Table.from_batches([page_batch(keys, sizes, modified, etags, classes)], schema=RAW_SCHEMA) if keys \
        else RAW_SCHEMA.empty_table()
    return listing_frame(bucket, root, raw)


def subfolders(listing: pd.DataFrame, root: str) -> list[str]:
    """The immediate sub-folders (the `PRE x/` lines of `aws s3 ls`), derived from the keys."""
    relative = listing["key"].str.slice(len(root))
    nested = relative[relative.str.contains("/", regex=False)]
    return sorted(set(nested.str.split("/", n=1).str[0] + "/"))


def render_ls(listing: pd.DataFrame, root: str, limit: int = 50) -> str:
    """`aws s3 ls s3://bucket/prefix/`: PRE lines, then the objects directly under the prefix."""
    lines = [f"{'PRE':>30} {folder}" for folder in subfolders(listing, root)]
    top = listing[listing["depth"].eq(0) & ~listing["is_folder"]]
    for row in top.head(limit).itertuples():
        stamp = row.last_modified.strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{stamp} {row.size:>10} {row.name}")
    if len(top) > limit:
        lines.append(f"... {len(top) - limit} more")
    return "\n".join(lines)


def render_ls_recursive(listing: pd.DataFrame, limit: int = 50) -> str:
    """`aws s3 ls --recursive`: every key with its time and size."""
    lines = [
        f"{row.last_modified:%Y-%m-%d %H:%M:%S} {row.size:>10} {row.key}"
        for row in listing.head(limit).itertuples()
    ]
    if len(listing) > limit:
        lines.append(f"... {len(listing) - limit} more")
    return "\n".join(lines)
