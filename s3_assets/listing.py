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
from botocore.compat import unquote_str

from s3_assets.errors import describe_client_error

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
CONTENTS = re.compile(rb"<Contents>.*?</Contents>", re.DOTALL)
_columns_wanted = threading.local()  # set only inside list_objects, in its own thread


class PageColumns:
    """Column lists filled from raw ListObjectsV2 pages."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.sizes: list[int] = []
        self.modified: list[str] = []
        self.etags: list[str] = []
        self.classes: list[str] = []

    def add_page(self, body: bytes) -> None:
        root = ET.fromstring(body)
        url_encoded = root.findtext(f"{S3_NS}EncodingType") == "url"
        for item in root.iter(f"{S3_NS}Contents"):
            key = item.findtext(f"{S3_NS}Key")
            self.keys.append(unquote_str(key) if url_encoded else key)
            self.sizes.append(int(item.findtext(f"{S3_NS}Size")))
            self.modified.append(item.findtext(f"{S3_NS}LastModified"))
            self.etags.append((item.findtext(f"{S3_NS}ETag") or "").strip('"'))
            self.classes.append(item.findtext(f"{S3_NS}StorageClass") or "STANDARD")


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


def list_objects(client: Any, bucket: str, root: str, page_size: int = 1000) -> pd.DataFrame:
    """Every object whose key starts with `root` ('' or ending in '/'), as a table."""
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
    return listing_frame(bucket, root, columns.keys, columns.sizes, columns.modified, columns.etags, columns.classes)


def listing_frame(bucket, root, keys, sizes, modified, etags, classes) -> pd.DataFrame:
    """Derive the per-key columns (folder marker, depth, name, extension, URI) in bulk."""
    key = pd.Series(keys, dtype="string[pyarrow]")
    relative = key.str.slice(len(root))
    is_folder = key.str.endswith("/") & (pd.Series(sizes, dtype="int64") == 0)
    trimmed = relative.str.rstrip("/")
    name = trimmed.str.rsplit("/", n=1).str[-1].astype("string[pyarrow]")
    has_dot = name.str.contains(".", regex=False) & ~is_folder
    extension = name.str.rsplit(".", n=1).str[-1].str.lower().where(has_dot, "").astype("string[pyarrow]")
    return pd.DataFrame({
        "key": key,
        "size": pd.Series(sizes, dtype="int64"),
        "last_modified": pd.to_datetime(pd.Series(modified, dtype="object"), utc=True, format="mixed"),
        "etag": pd.Series(etags, dtype="string[pyarrow]"),
        "storage_class": pd.Series(classes, dtype="category"),
        "is_folder": is_folder.astype("bool"),
        "depth": trimmed.str.count("/").astype("int64"),
        "name": name,
        "extension": extension,
        "uri": f"s3://{bucket}/" + key,
    }, columns=LISTING_COLUMNS)


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
