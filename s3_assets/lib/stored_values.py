"""Step outputs stored as files that pandas, pyarrow or DuckDB read, and nothing that executes
when read: a DataFrame is one Parquet object, a dict of DataFrames one Parquet object per frame
named after the frame, small values JSON, each version described by a `manifest.json`.

Layout of a value stored under the folder `<base>/`:

    <base>/manifest.json                     names the current version (a copy of its manifest)
    <base>/<version>/manifest.json           the version's files, their sizes and SHA-256
    <base>/<version>/<frame>.parquet         one object per frame, pandas metadata included

A version folder is complete before any manifest names it and is never changed afterwards, so a
reader sees the old value or the new one, never half of each. Every version folder holds a
`manifest.json`, which is not Parquet: a folder read (`pyarrow.dataset`, `pd.read_parquet` of a
folder) that would union different frames or versions fails loudly instead; reading one
`<frame>.parquet` gives that frame with its names, types and index.

A version is named `v<ns since 1970, 20 digits>-<8 hex>[-<run tag>]`: the writing run's id
(`run_tag`), so that the removal can ask whether that run may still read it.

Trust: `write` returns the SHA-256 of the version's manifest; the caller records it (Dagster:
the materialization's metadata) and `read` takes it back, checks the manifest against it and each
file against the manifest, so that nothing planted in the bucket is read. Verifying costs no
request beyond the reads themselves.

Removal: when the writer finishes (`finish()`, at the end of a run's steps in a process: off
the steps' path) each folder written is listed and every version is removed but the one just written, the one the folder's
manifest names, and those the caller's `keep` decision keeps (the IO manager: the one its
instance recorded last and those of runs not finished): a version is removed only when no reader
can still need it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import json
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from s3_assets.lib.dictionary import DataDictionary
from s3_assets.lib.errors import S3AssetsError, describe_client_error
from s3_assets.lib.text import printable

MANIFEST = "manifest.json"
FORMAT = "s3-assets/stored-value/2"
OLD_FORMATS = ("s3-assets/stored-value/1",)
# `v<ns>-<random>` (older releases) or `v<ns>-<random>-<run tag>`.
VERSION = re.compile(r"^v(\d{20})-[0-9a-f]{8}(?:-([A-Za-z0-9_-]{1,64}))?$")
_RUN_TAG = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Bodies up to this size go in one PutObject (without `Expect: 100-continue`) and are read into
# memory; larger ones go multipart from a temporary file and are read through one.
SMALL_BODY = 8 * 1024**2
TRANSFER = TransferConfig(multipart_threshold=64 * 1024**2, multipart_chunksize=16 * 1024**2, max_concurrency=4)
WORKERS = 8
# A key segment longer than this (bytes) is named by its hash: S3 keys hold 1,024 bytes, and
# some servers store each segment as a file name (255 bytes).
SEGMENT_MAX_BYTES = 200
_SEGMENT_SAFE = "-_."

# Dataclasses of frames that may be stored, by name: a manifest can only name one of these, so
# reading never imports or builds anything that storage chooses.
DATACLASSES: dict[str, type] = {"DataDictionary": DataDictionary}


class StoredValueError(S3AssetsError, ValueError):
    """A value cannot be stored, or what is stored is not a value this project wrote."""


class StoredValueGone(StoredValueError):
    """A recorded version's files are no longer in the bucket (removed or replaced)."""


# Decides, from candidate version names (none of them the one just written or the one the
# folder's manifest names), which must stay: the names returned are kept, the others removed.
KeepDecision = Callable[[list[str]], Collection[str]]


def run_tag(run_id: str) -> str:
    """The part of a version's name that names the run writing it: its id when that is a safe
    key text (Dagster's ids are UUIDs), else `h<sha256 prefix>`, which no instance knows."""
    if _RUN_TAG.match(run_id):
        return run_id
    return "h" + hashlib.sha256(run_id.encode()).hexdigest()[:32]


def version_run(version: str) -> str | None:
    """The run tag in a version's name, None for a version written outside a run or by an older
    release."""
    match = VERSION.match(version)
    return match.group(2) if match else None


def version_written_ns(version: str) -> int:
    """When a version was written (ns since 1970, the writer's clock), from its name."""
    match = VERSION.match(version)
    if not match:
        raise StoredValueError(f"{printable(repr(version))} is not a version name this project writes")
    return int(match.group(1))


def key_segment(text: str) -> str:
    """`text` as one key segment, the same for the same text and different for different ones:
    percent-encoded but for letters, digits, `-`, `_` and `.` (so `/`, `%`, `\\` and controls never
    reach a key), a leading dot encoded (no `.`, `..` or hidden names), and a text of more than
    SEGMENT_MAX_BYTES encoded bytes named `~<sha256>` (`~` is otherwise always encoded)."""
    if not text:
        raise StoredValueError("an empty name cannot be a key segment")
    encoded = quote(text, safe=_SEGMENT_SAFE).replace("~", "%7E")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) > SEGMENT_MAX_BYTES:
        return "~" + hashlib.sha256(text.encode()).hexdigest()
    return encoded


def frame_file(path: tuple[str, ...]) -> str:
    """The object name of a frame at `path` in a value (`("train",)`, `("value_tables", "L0")`):
    one segment, so all frames of a version sit beside its manifest."""
    for name in path:
        if not isinstance(name, str):
            raise StoredValueError(f"a frame name must be a string, not {type(name).__name__}")
        if not name or re.search(r"[\x00-\x1f\x7f]", name):
            raise StoredValueError(f"the frame name {printable(repr(name))} cannot name an object: "
                                   "use a non-empty name without control characters")
    segment = key_segment("/".join(path))
    if segment.startswith("~"):
        raise StoredValueError(f"the frame name {printable(repr('/'.join(path)))[:80]}… is too long to name an "
                               f"object (over {SEGMENT_MAX_BYTES} bytes encoded)")
    return segment + ".parquet"


def drop_expect_for_small_bodies(client: Any) -> None:
    """botocore asks for `Expect: 100-continue` on every PUT with a body, which costs a round
    trip before the body is sent; small bodies go without it. A public event hook, registered
    once per client (after botocore's own handler, which adds the header)."""
    client.meta.events.register_last("before-call.s3", _drop_expect, unique_id="s3-assets-drop-expect")


def _drop_expect(params: dict, **kwargs: Any) -> None:
    headers, body = params.get("headers") or {}, params.get("body")
    if headers.get("Expect") != "100-continue" or body is None:
        return
    if isinstance(body, bytes | bytearray):
        size = len(body)
    else:
        try:  # seek's return value is not used: some streams (s3transfer's chunks) return None
            start = body.tell()
            body.seek(0, 2)
            size = body.tell() - start
            body.seek(start)
        except (AttributeError, OSError, TypeError, ValueError):
            return
    if size <= SMALL_BODY:
        del headers["Expect"]


@dataclasses.dataclass(frozen=True)
class Stored:
    """What a write left: the version, the SHA-256 of its manifest (to record), its files."""

    version: str
    sha256: str
    files: int
    bytes: int
    manifest_key: str


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _frame_table(frame: pd.DataFrame) -> pa.Table:
    names = list(frame.columns)
    if not all(isinstance(name, (str, int)) and not isinstance(name, bool) for name in names):
        raise StoredValueError(f"column names of types {sorted({type(c).__name__ for c in names})} "
                               "cannot be stored: use strings or integers")
    if len({str(name) for name in names}) != len(names):
        raise StoredValueError("a DataFrame with duplicate column names (after str()) cannot be stored as Parquet")
    try:
        return pa.Table.from_pandas(frame)  # pandas metadata: names, dtypes and index come back
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as error:
        raise StoredValueError(f"a DataFrame cannot be stored as Parquet: {error}") from error


def _plan(value: Any, frames: dict[str, pd.DataFrame], path: tuple[str, ...] = ()) -> dict[str, Any]:
    """The manifest's description of `value`; its frames are collected into `frames` by file."""
    if isinstance(value, pd.DataFrame):
        name = frame_file(path or ("data",))
        frames[name] = value
        return {"kind": "frame", "file": name}
    if isinstance(value, dict) and value and all(isinstance(v, pd.DataFrame) for v in value.values()):
        if not all(isinstance(name, str) for name in value):
            raise StoredValueError("a dict of DataFrames needs string keys to be stored")
        return {"kind": "frames", "frames": {name: _plan(frame, frames, (*path, name)) for name, frame in value.items()}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and type(value).__name__ in DATACLASSES:
        fields = {f.name: _plan(getattr(value, f.name), frames, (*path, f.name)) for f in dataclasses.fields(value)}
        return {"kind": "dataclass", "type": type(value).__name__, "fields": fields}
    if _is_json(value):
        return {"kind": "json", "value": value}
    raise StoredValueError(
        f"a {type(value).__name__} cannot be stored as Parquet or JSON: return a DataFrame, a dict of "
        "DataFrames or JSON-serialisable data"
    )


def copy_value(value: Any) -> Any:
    """A copy that shares no mutable state with `value`: frames by a shallow copy (pandas'
    copy-on-write makes it behave as a deep one), containers and JSON values rebuilt."""
    if isinstance(value, pd.DataFrame):
        return value.copy(deep=False)
    if isinstance(value, dict) and value and all(isinstance(v, pd.DataFrame) for v in value.values()):
        return {name: frame.copy(deep=False) for name, frame in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: copy_value(getattr(value, f.name))
                                             for f in dataclasses.fields(value)})
    return copy.deepcopy(value)


class ValueStore:
    """Stored values in one bucket through one client: files written and read in parallel,
    superseded versions removed together when the writer finishes (`finish`, at the end of a
    run's steps in this process): a LIST per value written, one DeleteObjects for them all."""

    def __init__(self, client: Any, bucket: str, extra_args: dict[str, str] | None = None,
                 before_write: Callable[[str], None] | None = None):
        """before_write(what): called before a value's files and before its manifests are put (a
        run's lease check, local): it raises to stop the write, and no manifest names the value."""
        self.client, self.bucket, self.extra_args = client, bucket, dict(extra_args or {})
        self._before_write = before_write or (lambda what: None)
        drop_expect_for_small_bodies(client)
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="stored-values")
        self._background = ThreadPoolExecutor(1, thread_name_prefix="stored-values-removal")
        self._removals: list[Future[None]] = []
        self._superseding: list[tuple[str, str, KeepDecision | None]] = []  # (base, version written, keep)
        self._lock = threading.Lock()

    # -- writing ------------------------------------------------------------------------
    def write(self, base: str, value: Any, *, run_id: str | None = None, keep: KeepDecision | None = None) -> Stored:
        """Store `value` under the folder `base` (ending in '/'); `run_id` (the writing run) goes
        into the version's name. Superseded versions are removed by `finish`:
        all but this one, the one the folder's manifest names and those `keep` keeps (without
        `keep`, none: for a single writer, such as tools and tests)."""
        version = f"v{time.time_ns():020d}-{uuid.uuid4().hex[:8]}" + (f"-{run_tag(run_id)}" if run_id else "")
        frames: dict[str, pd.DataFrame] = {}
        description = _plan(value, frames)
        self._before_write(f"storing a value under s3://{self.bucket}/{base}")
        uploads = {name: self._pool.submit(self._put_frame, f"{base}{version}/{name}", frame)
                   for name, frame in frames.items()}
        wait(uploads.values())  # all of them, so that a failure leaves nothing still uploading
        files = {name: upload.result() for name, upload in uploads.items() if upload.exception() is None}
        failures = [upload.exception() for upload in uploads.values() if upload.exception() is not None]
        if failures:
            self._remove_later([f"{base}{version}/{name}" for name in files])
            raise failures[0]  # type: ignore[misc]
        manifest = {"format": FORMAT, "version": version, "value": description, "files": files,
                    "bytes": sum(f["bytes"] for f in files.values())}
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        version_manifest, pointer = f"{base}{version}/{MANIFEST}", f"{base}{MANIFEST}"
        try:  # the manifests make the value current: put only while the run's hold is live
            self._before_write(f"putting s3://{self.bucket}/{pointer}, which would make the stored value current")
        except S3AssetsError:
            self._remove_later([f"{base}{version}/{name}" for name in files])
            raise
        puts = [self._pool.submit(self._put, key, body, "application/json") for key in (version_manifest, pointer)]
        for put in puts:
            put.result()
        with self._lock:
            self._superseding.append((base, version, keep))
        return Stored(version, hashlib.sha256(body).hexdigest(), len(files), manifest["bytes"], version_manifest)

    def _put(self, key: str, body: bytes, content_type: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, **self.extra_args)
        except (ClientError, BotoCoreError) as error:
            raise describe_client_error(error, bucket=self.bucket, key=key) from error

    def _put_frame(self, key: str, frame: pd.DataFrame) -> dict[str, Any]:
        table = _frame_table(frame)
        with tempfile.NamedTemporaryFile(suffix=".parquet") as handle:
            pq.write_table(table, handle.name)
            del table
            digest, size = hashlib.sha256(), 0
            with open(handle.name, "rb") as source:
                for chunk in iter(lambda: source.read(1024**2), b""):
                    digest.update(chunk)
                    size += len(chunk)
                if size <= SMALL_BODY:
                    source.seek(0)
                    self._put(key, source.read(), "application/vnd.apache.parquet")
                    return {"sha256": digest.hexdigest(), "bytes": size}
            try:
                self.client.upload_file(handle.name, self.bucket, key, Config=TRANSFER,
                                        ExtraArgs={**self.extra_args, "ContentType": "application/vnd.apache.parquet"})
            except (ClientError, BotoCoreError) as error:
                raise describe_client_error(error, bucket=self.bucket, key=key) from error
        return {"sha256": digest.hexdigest(), "bytes": size}

    def _superseded(self, base: str, written: str, keep: KeepDecision | None) -> list[str]:
        """The keys of the versions under `base` that no reader can still need. One LIST (the
        folder's versions, their files and the ETags that tell which version the folder's
        manifest copies), a GET of that manifest only when no ETag matches."""
        versions, pointer_etag = self._versions(base)
        named = next((v for v, (_, etag) in versions.items() if etag is not None and etag == pointer_etag), None)
        if named is None and pointer_etag is not None:
            try:
                body = self._get(base + MANIFEST, f"the stored value s3://{self.bucket}/{printable(base)}")
                parsed = json.loads(body)
            except StoredValueGone:
                parsed = None  # replaced since the listing: a newer write removes what this one leaves
            except ValueError:
                parsed = None  # not JSON: names nothing
            named = parsed.get("version") if isinstance(parsed, dict) else None
        candidates = sorted(set(versions) - {written, named})
        if not candidates:
            return []
        kept = set(keep(candidates)) if keep is not None else set()
        return [key for version in candidates if version not in kept for key in versions[version][0]]

    def _versions(self, base: str) -> tuple[dict[str, tuple[list[str], str | None]], str | None]:
        """The version folders directly under `base` (name -> (keys, ETag of its manifest)) and the
        ETag of the folder's manifest. A folder named like a version that holds folders is not one
        (an asset key or partition segment that looks like a version): never listed as one."""
        versions: dict[str, tuple[list[str], str | None]] = {}
        nested: set[str] = set()
        pointer_etag = None
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
                for item in page.get("Contents", []):
                    rest = item["Key"][len(base):]
                    if rest == MANIFEST:
                        pointer_etag = item.get("ETag")
                        continue
                    folder, _, name = rest.partition("/")
                    if not VERSION.match(folder) or not name:
                        continue
                    if "/" in name:
                        nested.add(folder)
                        continue
                    keys, etag = versions.get(folder, ([], None))
                    keys.append(item["Key"])
                    versions[folder] = (keys, item.get("ETag") if name == MANIFEST else etag)
        except (ClientError, BotoCoreError) as error:
            raise describe_client_error(error, bucket=self.bucket, key=base) from error
        return {name: entry for name, entry in versions.items() if name not in nested}, pointer_etag

    def _remove_later(self, keys: list[str]) -> None:
        if not keys:
            return
        with self._lock:
            self._removals.append(self._background.submit(self._delete, keys))

    def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            try:
                answer = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            except (ClientError, BotoCoreError) as error:
                raise describe_client_error(error, bucket=self.bucket, key=batch[0]) from error
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StoredValueError(f"{len(answer['Errors'])} superseded stored file(s) not removed, first "
                                       f"s3://{self.bucket}/{printable(str(first.get('Key')))}: "
                                       f"{printable(str(first.get('Code')))}")

    def finish(self) -> list[str]:
        """Remove what the writes so far superseded (their folders listed in parallel, then one
        DeleteObjects per 1,000 keys) and wait for the background removals; what failed, as
        messages (they never fail a run: a superseded version left behind is only space, and
        cleanup removes it)."""
        with self._lock:
            removals, self._removals = self._removals, []
            superseding, self._superseding = self._superseding, []
        found = [self._pool.submit(self._superseded, *entry) for entry in superseding]
        every: list[Future[Any]] = [*removals, *found]
        wait(every)
        failures = [str(f.exception()) for f in every if f.exception() is not None]
        keys = [key for f in found if f.exception() is None for key in f.result()]
        if keys:
            try:
                self._delete(keys)
            except S3AssetsError as error:
                failures.append(str(error))
        return failures

    def close(self) -> list[str]:
        failures = self.finish()
        self._pool.shutdown(wait=True)
        self._background.shutdown(wait=True)
        return failures

    # -- reading ------------------------------------------------------------------------
    def read(self, base: str, version: str, sha256: str, what: str) -> Any:
        """The value stored as `version` under `base`, proven: its manifest must hash to
        `sha256` (recorded when it was stored, never taken from the bucket) and each file it
        reads must hash to what that manifest says. `what` names the value in errors."""
        if not isinstance(version, str) or not VERSION.match(version):
            raise StoredValueError(f"{what}: the recorded version {printable(repr(version))} is not one this "
                                   "project writes: materialize it again")
        key = f"{base}{version}/{MANIFEST}"
        body = self._get(key, what)
        if hashlib.sha256(body).hexdigest() != sha256:
            raise StoredValueError(
                f"{what}: s3://{self.bucket}/{printable(key)} is not the manifest that was stored (its SHA-256 differs "
                "from the one recorded with the materialization): it was changed in the bucket; refusing to read it. "
                "Materialize it again")
        manifest = self._parse(body, key)
        return self._decode(base, version, manifest, what)

    def read_current(self, base: str) -> Any:
        """The value the folder's manifest names now, each file checked against that manifest
        (self-consistent, not proven: for tools and tests; Dagster reads through `read`)."""
        key = base + MANIFEST
        manifest = self._get_json(key, missing_ok=False)
        assert manifest is not None
        version = manifest.get("version")
        if not isinstance(version, str) or not VERSION.match(version):
            raise StoredValueError(f"s3://{self.bucket}/{printable(key)} names no version this project writes")
        return self._decode(base, version, manifest, f"the stored value s3://{self.bucket}/{printable(base)}")

    def _get(self, key: str, what: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise StoredValueGone(f"{what}: s3://{self.bucket}/{printable(key)} is gone (removed or replaced "
                                       "since it was recorded): materialize it again") from None
            raise describe_client_error(error, bucket=self.bucket, key=key) from error
        except BotoCoreError as error:
            raise describe_client_error(error, bucket=self.bucket, key=key) from error

    def _get_json(self, key: str, missing_ok: bool) -> dict | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                if missing_ok:
                    return None
                raise StoredValueError(f"no stored value at s3://{self.bucket}/{printable(key.removesuffix(MANIFEST))} "
                                       f"(no {MANIFEST}): materialize the upstream asset first") from None
            raise describe_client_error(error, bucket=self.bucket, key=key) from error
        except BotoCoreError as error:
            raise describe_client_error(error, bucket=self.bucket, key=key) from error
        return self._parse(body, key)

    def _parse(self, body: bytes, key: str) -> dict:
        try:
            manifest = json.loads(body)
        except ValueError:
            raise StoredValueError(f"s3://{self.bucket}/{printable(key)} is not JSON: not a value this project "
                                   "stored") from None
        if not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, *OLD_FORMATS):
            raise StoredValueError(f"s3://{self.bucket}/{printable(key)} is not a manifest of format {FORMAT!r}")
        if manifest["format"] != FORMAT:
            raise StoredValueError(f"s3://{self.bucket}/{printable(key)} was stored by an older version of s3-assets "
                                   f"({printable(str(manifest['format']))}): materialize it again")
        if not isinstance(manifest.get("files"), dict):
            raise StoredValueError(f"s3://{self.bucket}/{printable(key)} lists no files")
        return manifest

    def _decode(self, base: str, version: str, manifest: dict, what: str) -> Any:
        files: dict = manifest["files"]
        reads: dict[str, Future[pd.DataFrame]] = {}

        def frame(entry: dict) -> Callable[[], pd.DataFrame]:
            name = entry.get("file")
            if not isinstance(name, str) or name not in files or "/" in name or name in (MANIFEST, ".", ".."):
                raise StoredValueError(f"{what}: its manifest names a file outside its version folder: "
                                       f"{printable(repr(name))}")
            if name not in reads:
                reads[name] = self._pool.submit(self._read_frame, f"{base}{version}/{name}", files[name], what)
            future = reads[name]
            return future.result

        def walk(entry: Any) -> Callable[[], Any]:
            kind = entry.get("kind") if isinstance(entry, dict) else None
            if kind == "json":
                return lambda: entry["value"]
            if kind == "frame":
                return frame(entry)
            if kind == "frames" and isinstance(entry.get("frames"), dict):
                parts = {name: walk(part) for name, part in entry["frames"].items()}
                return lambda: {name: get() for name, get in parts.items()}
            if kind == "dataclass" and entry.get("type") in DATACLASSES and isinstance(entry.get("fields"), dict):
                fields = {name: walk(part) for name, part in entry["fields"].items()}
                return lambda: DATACLASSES[entry["type"]](**{name: get() for name, get in fields.items()})
            raise StoredValueError(f"{what}: its manifest describes an unknown kind of value: {printable(repr(kind))}")

        build = walk(manifest.get("value"))  # every read starts before the first is awaited
        return build()

    def _read_frame(self, key: str, expected: Any, what: str) -> pd.DataFrame:
        if not isinstance(expected, dict) or not isinstance(expected.get("sha256"), str):
            raise StoredValueError(f"{what}: its manifest gives no SHA-256 for s3://{self.bucket}/{printable(key)}")
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise StoredValueGone(f"{what}: s3://{self.bucket}/{printable(key)} is gone: materialize it again") \
                    from None
            raise describe_client_error(error, bucket=self.bucket, key=key) from error
        digest, size = hashlib.sha256(), 0
        buffer: Any = io.BytesIO()  # a large body moves to a temporary file, read from there
        spilled = False
        try:
            for chunk in iter(lambda: body.read(1024**2), b""):
                digest.update(chunk)
                size += len(chunk)
                if not spilled and size > SMALL_BODY:
                    spill = tempfile.TemporaryFile()
                    spill.write(buffer.getvalue())
                    buffer, spilled = spill, True
                buffer.write(chunk)
        except (ClientError, BotoCoreError) as error:
            buffer.close()
            raise describe_client_error(error, bucket=self.bucket, key=key) from error
        with buffer:
            if digest.hexdigest() != expected["sha256"]:
                raise StoredValueError(
                    f"{what}: s3://{self.bucket}/{printable(key)} is not the file that was stored (its SHA-256 differs "
                    "from the manifest's): it was changed in the bucket; refusing to read it. Materialize it again")
            buffer.seek(0)
            table = pq.read_table(buffer if spilled else pa.BufferReader(buffer.getvalue()))
        return table.to_pandas(self_destruct=True, split_blocks=True)


# -- one-call forms, for tools and tests ------------------------------------------------------
def write_value(client: Any, bucket: str, base: str, value: Any, extra_args: dict[str, str] | None = None) -> Stored:
    """Store `value` under the folder `base` (ending in '/'), superseded versions removed."""
    store = ValueStore(client, bucket, extra_args)
    try:
        return store.write(base, value)
    finally:
        store.close()


def read_value(client: Any, bucket: str, base: str, version: str | None = None, sha256: str | None = None,
               what: str | None = None) -> Any:
    """The value stored under `base`: proven when `version` and `sha256` (recorded at the write)
    are given, else the one its folder's manifest names now."""
    store = ValueStore(client, bucket)
    try:
        if version is not None and sha256 is not None:
            return store.read(base, version, sha256, what or f"the stored value s3://{bucket}/{printable(base)}")
        return store.read_current(base)
    finally:
        store.close()


def exists(client: Any, bucket: str, base: str) -> bool:
    """Whether the folder `base` holds a stored value (its manifest): one HEAD."""
    try:
        client.head_object(Bucket=bucket, Key=base + MANIFEST)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return False
        raise describe_client_error(error, bucket=bucket, key=base + MANIFEST) from None
    return True


def read_manifest(client: Any, bucket: str, base: str) -> dict:
    """The manifest the folder `base` names now (format checked, nothing proven)."""
    store = ValueStore(client, bucket)
    try:
        manifest = store._get_json(base + MANIFEST, missing_ok=False)
    finally:
        store.close()
    assert manifest is not None
    return manifest


def stored_value_part(key: str) -> str | None:
    """Whether `key` looks like part of a stored value, from its name alone (no request): 'version'
    for an object inside a version folder (`…/v<ns>-<8hex>[-<run>]/<file>`, a shape no data file
    of the project's has), 'pointer' for a `manifest.json` (a folder's pointer; a data prefix may
    hold such a name too), None otherwise. A cleanup uses it to tell another configuration's
    stored outputs inside its data prefix (docs/RELIABILITY.md)."""
    segments = key.split("/")
    if any(VERSION.match(segment) for segment in segments[:-1]):
        return "version"
    return "pointer" if segments[-1] == MANIFEST else None
