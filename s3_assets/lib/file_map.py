"""Which listed objects are data files, by explicit rules instead of the notebook's
`len(key.rsplit('.')) == 2` trick: files only, at most so deep, with allowed extensions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from s3_assets.lib.errors import S3AssetsError
from s3_assets.lib.server_keys import renamed_by_servers
from s3_assets.lib.text import printable


@dataclass(frozen=True)
class FileMapRules:
    """max_depth 0: directly under the prefix; 1: raw/ (leaves out raw/metadata/)."""

    max_depth: int = 1
    extensions: tuple[str, ...] = field(default=("csv",))


class DuplicateNameError(S3AssetsError, ValueError):
    """Two data files would get the same name; the message names both keys."""


def build_file_map(listing: pd.DataFrame, rules: FileMapRules) -> dict[str, str]:
    """name (file name without extension) -> key, for the data files the rules select."""
    return select_data_files(listing, rules)[0]


def select_data_files(listing: pd.DataFrame, rules: FileMapRules) -> tuple[dict[str, str], list[str]]:
    """(name -> key, keys the rules select but that cannot be named): every selected key is in
    one or the other, never dropped. A name must be printable text (no newline, no control or
    bidi character: it becomes a dict key, a log line, a UI label)."""
    allowed = {ext.lower().lstrip(".") for ext in rules.extensions}
    selected = listing[
        ~listing["is_folder"] & listing["depth"].le(rules.max_depth) & listing["extension"].isin(allowed)
    ]
    file_map: dict[str, str] = {}
    unnamed: list[str] = []
    for key, name in zip(selected["key"], selected["name"], strict=True):
        stem = name.rsplit(".", 1)[0]
        if not stem or printable(stem) != stem:
            unnamed.append(key)
            continue
        if stem in file_map:
            raise DuplicateNameError(
                f"two data files are both named {printable(stem)!r}: {printable(file_map[stem])!r} and "
                f"{printable(key)!r}; "
                "rename one, or narrow the rules (max_depth, extensions)"
            )
        file_map[stem] = key
    return file_map, unnamed


class OutsidePrefixError(S3AssetsError, ValueError):
    """A file map names an object outside the bucket and data prefix; the message names each."""


def keys_under_prefix(file_map: Mapping[Any, Any], bucket: str, root: str) -> dict[str, str]:
    """name -> key for a file map (name -> `s3://` URI) whose every URI is in `bucket` under the
    data prefix `root` ('' or ending in '/'), as the server will store it. Whatever produced
    the map (a stored value someone planted, an edited run config), a URI elsewhere is refused,
    every such entry named (escaped), before any object is read."""
    keys: dict[str, str] = {}
    refused: list[str] = []
    for name, uri in file_map.items():
        text = uri if isinstance(uri, str) else ""
        uri_bucket, _, key = text.removeprefix("s3://").partition("/")
        if (isinstance(name, str) and text.startswith("s3://") and uri_bucket == bucket and key.startswith(root)
                and len(key) > len(root) and not key.endswith("/") and renamed_by_servers(key) is None):
            keys[name] = key
        else:
            refused.append(f"{printable(str(name))}: {printable(str(uri))}")
    if refused:
        shown = "; ".join(refused[:20]) + (f"; and {len(refused) - 20} more" if len(refused) > 20 else "")
        raise OutsidePrefixError(f"the file map names {len(refused)} object(s) outside s3://{bucket}/{printable(root)} "
                                 f"(nothing was loaded): {shown}")
    return keys
