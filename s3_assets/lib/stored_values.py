"""Step outputs stored as files that pandas, pyarrow or DuckDB read, and nothing that executes
when read: a DataFrame is one Parquet file, a dict of DataFrames one Parquet file per frame,
small values JSON, each described by a `manifest.json`.

A stored value is a folder `<base>/`: the data files go under a new version folder
`<base>/<version>/`, and the manifest, written last, names that version. A reader therefore
sees the old value or the new one, never half of each, and a write that dies half-way leaves
the previous value readable. Versions older than the one the manifest names are removed after
each write.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
import uuid
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from s3_assets.lib.dictionary import DataDictionary
from s3_assets.lib.errors import S3AssetsError, describe_client_error
from s3_assets.lib.text import printable

MANIFEST = "manifest.json"
FORMAT = "s3-assets/stored-value/1"
TRANSFER = TransferConfig(multipart_threshold=64 * 1024**2, multipart_chunksize=16 * 1024**2, max_concurrency=4)

# Dataclasses of frames that may be stored, by name: a manifest can only name one of these, so
# reading never imports or builds anything that storage chooses.
DATACLASSES: dict[str, type] = {"DataDictionary": DataDictionary}


class StoredValueError(S3AssetsError, ValueError):
    """A value cannot be stored, or what is stored is not a value this project wrote."""


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


class _Writer:
    def __init__(self, client: Any, bucket: str, base: str, extra_args: dict[str, str]):
        self.client, self.bucket, self.base, self.extra_args = client, bucket, base, extra_args
        self.version = f"v{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        self.count = 0
        self.bytes = 0

    def frame(self, frame: pd.DataFrame) -> dict[str, Any]:
        """One Parquet file, written to a temporary file first so memory holds no second copy."""
        self.count += 1
        relative = f"{self.version}/part-{self.count:04d}.parquet"
        entry: dict[str, Any] = {"kind": "frame", "file": relative}
        if not all(isinstance(name, str) for name in frame.columns):
            # Parquet names columns with strings; keep the originals (the raw tables' 0..85).
            if not all(isinstance(name, (str, int)) and not isinstance(name, bool) for name in frame.columns):
                raise StoredValueError(f"column names of types {sorted({type(c).__name__ for c in frame.columns})} "
                                       "cannot be stored: use strings or integers")
            entry["columns"] = [name if isinstance(name, str) else int(name) for name in frame.columns]
        try:
            table = pa.Table.from_pandas(frame, preserve_index=not isinstance(frame.index, pd.RangeIndex))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
            raise StoredValueError(f"a DataFrame cannot be stored as Parquet: {error}") from error
        with tempfile.NamedTemporaryFile(suffix=".parquet") as handle:
            pq.write_table(table, handle.name)
            del table
            key = self.base + relative
            try:
                self.client.upload_file(handle.name, self.bucket, key, ExtraArgs=self.extra_args, Config=TRANSFER)
            except ClientError as error:
                raise describe_client_error(error, bucket=self.bucket, key=key) from error
            self.bytes += handle.seek(0, 2)
        return entry

    def encode(self, value: Any) -> dict[str, Any]:
        if isinstance(value, pd.DataFrame):
            return self.frame(value)
        if isinstance(value, dict) and value and all(isinstance(v, pd.DataFrame) for v in value.values()):
            if not all(isinstance(name, str) for name in value):
                raise StoredValueError("a dict of DataFrames needs string keys to be stored")
            return {"kind": "frames", "frames": {name: self.frame(frame) for name, frame in value.items()}}
        if dataclasses.is_dataclass(value) and type(value).__name__ in DATACLASSES:
            fields = {f.name: self.encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
            return {"kind": "dataclass", "type": type(value).__name__, "fields": fields}
        if _is_json(value):
            return {"kind": "json", "value": value}
        raise StoredValueError(
            f"a {type(value).__name__} cannot be stored as Parquet or JSON: return a DataFrame, a dict of "
            "DataFrames or JSON-serialisable data"
        )


def write_value(client: Any, bucket: str, base: str, value: Any, extra_args: dict[str, str] | None = None) -> dict:
    """Store `value` under the folder `base` (ending in '/'); returns the manifest written."""
    writer = _Writer(client, bucket, base, extra_args or {})
    manifest = {"format": FORMAT, "version": writer.version, "value": writer.encode(value),
                "files": writer.count, "bytes": writer.bytes}
    body = json.dumps(manifest, indent=1).encode()
    try:
        client.put_object(Bucket=bucket, Key=base + MANIFEST, Body=body, ContentType="application/json",
                          **(extra_args or {}))
    except ClientError as error:
        raise describe_client_error(error, bucket=bucket, key=base + MANIFEST) from error
    _remove_old_versions(client, bucket, base, writer.version)
    return manifest


def _remove_old_versions(client: Any, bucket: str, base: str, mine: str) -> None:
    """Delete the version folders older than both ours and the one the manifest now names
    (another writer may have won the race; what the manifest names always stays)."""
    try:
        current = read_manifest(client, bucket, base)["version"]
    except StoredValueError:
        return
    oldest_kept = min(mine, current)
    stale: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
        for item in page.get("Contents", []):
            version = item["Key"][len(base):].split("/", 1)[0]
            if version.startswith("v") and version < oldest_kept:
                stale.append(item["Key"])
    for start in range(0, len(stale), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in stale[start:start + 1000]],
                                                     "Quiet": True})


def read_manifest(client: Any, bucket: str, base: str) -> dict:
    key = base + MANIFEST
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            raise StoredValueError(f"no stored value at s3://{bucket}/{printable(base)} (no {MANIFEST}): "
                                   "materialize the upstream asset first") from None
        raise describe_client_error(error, bucket=bucket, key=key) from error
    try:
        manifest = json.loads(body)
    except ValueError:
        raise StoredValueError(f"s3://{bucket}/{printable(key)} is not JSON: not a value this project stored") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoredValueError(f"s3://{bucket}/{printable(key)} is not a manifest of format {FORMAT!r}")
    return manifest


def exists(client: Any, bucket: str, base: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=base + MANIFEST)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return False
        raise describe_client_error(error, bucket=bucket, key=base + MANIFEST) from error
    return True


def read_value(client: Any, bucket: str, base: str) -> Any:
    """The value stored under `base`, as it was written."""
    manifest = read_manifest(client, bucket, base)
    return _decode(client, bucket, base, manifest["value"])


def _decode(client: Any, bucket: str, base: str, entry: Any) -> Any:
    kind = entry.get("kind") if isinstance(entry, dict) else None
    if kind == "json":
        return entry["value"]
    if kind == "frame":
        return _read_frame(client, bucket, base, entry)
    if kind == "frames":
        return {name: _read_frame(client, bucket, base, part) for name, part in entry["frames"].items()}
    if kind == "dataclass" and entry.get("type") in DATACLASSES:
        fields = {name: _decode(client, bucket, base, part) for name, part in entry["fields"].items()}
        return DATACLASSES[entry["type"]](**fields)
    raise StoredValueError(f"s3://{bucket}/{base}{MANIFEST} describes an unknown kind of value: {kind!r}")


def _read_frame(client: Any, bucket: str, base: str, entry: dict) -> pd.DataFrame:
    relative = str(entry["file"])
    if relative.startswith("/") or ".." in relative.split("/"):
        raise StoredValueError(f"s3://{bucket}/{base}{MANIFEST} names a file outside its folder: {relative!r}")
    key = base + relative
    with tempfile.NamedTemporaryFile(suffix=".parquet") as handle:
        try:
            client.download_file(bucket, key, handle.name, Config=TRANSFER)
        except ClientError as error:
            raise describe_client_error(error, bucket=bucket, key=key) from error
        frame = pq.read_table(handle.name, memory_map=True).to_pandas(self_destruct=True, split_blocks=True)
    if "columns" in entry:
        frame.columns = entry["columns"]
    return frame


def delete_value(client: Any, bucket: str, base: str) -> int:
    """Remove a stored value (manifest first, so no reader sees a value without its files)."""
    client.delete_object(Bucket=bucket, Key=base + MANIFEST)
    keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base)
            for item in page.get("Contents", [])]
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]],
                                                     "Quiet": True})
    return len(keys)
