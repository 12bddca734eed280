"""Listing every object under a prefix into a table, however many there are.

The notebook's single `list_objects_v2` call stops at 1,000 keys; here the paginator walks all
pages and each page goes straight into column lists (no per-object dicts are kept).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from s3_assets.errors import describe_client_error

LISTING_COLUMNS = [
    "key", "size", "last_modified", "etag", "storage_class", "is_folder",
    "depth", "name", "extension", "uri",
]


def list_objects(client: Any, bucket: str, root: str, page_size: int = 1000) -> pd.DataFrame:
    """Every object whose key starts with `root` ('' or ending in '/'), as a table."""
    keys: list[str] = []
    sizes: list[int] = []
    modified: list[Any] = []
    etags: list[str] = []
    classes: list[str] = []
    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=root, PaginationConfig={"PageSize": page_size}):
            for item in page.get("Contents", ()):
                keys.append(item["Key"])
                sizes.append(item["Size"])
                modified.append(item["LastModified"])
                etags.append(item.get("ETag", "").strip('"'))
                classes.append(item.get("StorageClass", "STANDARD"))
    except Exception as error:
        raise describe_client_error(error, bucket=bucket, key=root, endpoint=client.meta.endpoint_url) from None
    return listing_frame(bucket, root, keys, sizes, modified, etags, classes)


def listing_frame(bucket, root, keys, sizes, modified, etags, classes) -> pd.DataFrame:
    """Derive the per-key columns (folder marker, depth, name, extension, URI) in bulk."""
    key = pd.Series(keys, dtype="string")
    relative = key.str.slice(len(root))
    is_folder = key.str.endswith("/") & (pd.Series(sizes, dtype="int64") == 0)
    trimmed = relative.str.rstrip("/")
    name = trimmed.str.rsplit("/", n=1).str[-1]
    has_dot = name.str.contains(".", regex=False) & ~is_folder
    extension = name.str.rsplit(".", n=1).str[-1].str.lower().where(has_dot, "")
    return pd.DataFrame({
        "key": key,
        "size": pd.Series(sizes, dtype="int64"),
        "last_modified": pd.to_datetime(pd.Series(modified, dtype="object"), utc=True),
        "etag": pd.Series(etags, dtype="string"),
        "storage_class": pd.Series(classes, dtype="string"),
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
