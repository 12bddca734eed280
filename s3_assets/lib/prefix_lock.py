"""Runs that use a prefix and the cleanup of that prefix exclude each other, across processes,
machines and Dagster instances, with notes in the bucket itself.

Both sides first leave a note, then look for the other's (the order of Dekker's algorithm): a
run puts `<locks>/writers/<run id>.json` before its first S3 request on the prefix, then reads
`<locks>/cleanup.json`; the cleanup puts `cleanup.json` (a conditional PUT, `If-None-Match: *`,
so two cleanups exclude each other too) and then lists `writers/`. S3 is strongly consistent
(read-after-write, list-after-write), so at least one side sees the other and backs off, naming
it: never both proceed. A run holds its note from its first request to its end (not only
around its PUTs: a step that finds identical bytes already in S3 skips its PUT and still counts
on them).

A note names its owner (run id) and how long it holds (`ttl_seconds`); a live holder renews it
every third of that. Expiry is judged on the server's clock only (the note's LastModified and the
Date of the response that read it), so clock skew between machines does not matter. The
cleanup also asks its Dagster instance (a callback) whether a run it finds is finished: its
note then no longer counts; a run of another instance counts until its note expires.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.exceptions import ClientError

from s3_assets.lib.errors import S3_FAILURES, S3AssetsError, describe_client_error

LOCKS_DIR = ".locks/"
DEFAULT_TTL = 120.0


class PrefixBusyError(S3AssetsError, RuntimeError):
    """The prefix is held by the other side (a cleanup, or runs that use it); the message names it."""


@dataclass(frozen=True)
class Note:
    key: str
    owner: str
    kind: str
    written: datetime  # the server's LastModified
    expires: datetime
    etag: str

    def describe(self) -> str:
        return f"{self.kind} run {self.owner} (note s3 key {self.key}, holds until {self.expires:%Y-%m-%d %H:%M:%S} UTC)"


def locks_root(outputs_root: str) -> str:
    """Where the notes of one data prefix live: inside its stored outputs' folder, under a name no
    Dagster asset or op can have (they may not start with '.')."""
    return outputs_root + LOCKS_DIR


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "")) or str(
        error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _server_now(response: dict) -> datetime | None:
    date = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    return parsedate_to_datetime(date) if date else None


class PrefixLocks:
    """The notes of one prefix in one bucket, written and read through one boto3 client."""

    def __init__(self, client: Any, bucket: str, root: str, *, what: str, ttl_seconds: float = DEFAULT_TTL,
                 write_args: dict[str, str] | None = None):
        """root: the notes' folder (`locks_root(...)`); what: the prefix they guard, for messages;
        write_args: extra PutObject arguments (server-side encryption), as on every write."""
        self.client, self.bucket, self.root, self.what, self.ttl = client, bucket, root, what, float(ttl_seconds)
        self.write_args = dict(write_args or {})
        self.cleanup_key = root + "cleanup.json"
        self.writers_root = root + "writers/"

    # -- notes ---------------------------------------------------------------------------
    def _body(self, owner: str, kind: str, ttl: float) -> bytes:
        return json.dumps({"owner": owner, "kind": kind, "ttl_seconds": ttl, "host": socket.gethostname(),
                           "pid": os.getpid(), "token": uuid.uuid4().hex}).encode()

    def _put(self, key: str, owner: str, kind: str, *, exclusive: bool = False, ttl: float | None = None) -> str:
        extra = {**self.write_args, **({"IfNoneMatch": "*"} if exclusive else {})}
        body = self._body(owner, kind, self.ttl if ttl is None else ttl)
        try:
            return self.client.put_object(Bucket=self.bucket, Key=key, Body=body,
                                          ContentType="application/json", **extra)["ETag"]
        except ClientError as error:
            if exclusive and _code(error) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise
            if exclusive and _code(error) in ("NotImplemented", "501"):  # no conditional writes: plain PUT
                return self._put(key, owner, kind, ttl=ttl)
            raise describe_client_error(error, bucket=self.bucket, key=key,
                                        endpoint=self.client.meta.endpoint_url) from None
        except S3_FAILURES as error:
            raise describe_client_error(error, bucket=self.bucket, key=key,
                                        endpoint=self.client.meta.endpoint_url) from None

    def read(self, key: str) -> tuple[Note, datetime] | None:
        """The note at key and the server's time of reading it, or None if there is none."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            body = json.loads(response["Body"].read())
        except ClientError as error:
            if _code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise describe_client_error(error, bucket=self.bucket, key=key,
                                        endpoint=self.client.meta.endpoint_url) from None
        except ValueError:
            body = {}
        written = response["LastModified"]
        ttl = float(body.get("ttl_seconds", self.ttl))
        return Note(key, str(body.get("owner", "?")), str(body.get("kind", "?")), written,
                    written + timedelta(seconds=ttl), response["ETag"]), _server_now(response) or written

    def _expired(self, note: Note, now: datetime) -> bool:
        return now >= note.expires

    def _delete(self, key: str, etag: str | None = None) -> None:
        extra = {"IfMatch": etag} if etag else {}
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key, **extra)
        except ClientError as error:
            if _code(error) not in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise describe_client_error(error, bucket=self.bucket, key=key,
                                            endpoint=self.client.meta.endpoint_url) from None

    # -- a run that uses the prefix ---------------------------------------------------------
    def hold_for_run(self, run_id: str) -> Heartbeat:
        """Put this process's note for the run, then refuse (taking the note back) if a live
        cleanup holds the prefix. The returned heartbeat renews the note until stopped."""
        key = f"{self.writers_root}{run_id}/{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self._put(key, run_id, "writing")
        found = self.read(self.cleanup_key)
        if found is not None and not self._expired(*found):
            self._delete(key)
            raise PrefixBusyError(
                f"{self.what} is being cleaned up by {found[0].describe()}: this run ({run_id}) does not touch it; "
                "run it again after the cleanup")
        return Heartbeat(lambda: self._put(key, run_id, "writing"), self.ttl / 3)

    # -- the cleanup -------------------------------------------------------------------------
    @contextmanager
    def cleanup(self, run_id: str, is_finished: Callable[[str], bool | None] = lambda run_id: None) -> Iterator[None]:
        """Hold the prefix for a cleanup: refuse (naming them) while other runs hold it.

        `is_finished(run_id)`: True/False if the run is known to this Dagster instance, else None.
        """
        self._take_cleanup_note(run_id)
        heartbeat = Heartbeat(lambda: self._put(self.cleanup_key, run_id, "cleanup"), self.ttl / 3)
        try:
            stale = self._check_writers(run_id, is_finished)
            yield
            for note in stale:  # notes of finished runs: the cleanup leaves no leftovers
                self._delete(note.key, note.etag)
        finally:
            heartbeat.stop()
            self._delete(self.cleanup_key)

    def _take_cleanup_note(self, run_id: str) -> None:
        for _attempt in range(2):
            try:
                self._put(self.cleanup_key, run_id, "cleanup", exclusive=True)
                return
            except ClientError:
                found = self.read(self.cleanup_key)
                if found is None:
                    continue
                note, now = found
                if not self._expired(note, now):
                    raise PrefixBusyError(f"another cleanup holds the prefix: {note.describe()}") from None
                self._delete(note.key, note.etag)  # expired: a crashed cleanup; only that version goes
        raise PrefixBusyError(f"could not take the cleanup note s3://{self.bucket}/{self.cleanup_key}")

    def _check_writers(self, run_id: str, is_finished: Callable[[str], bool | None]) -> list[Note]:
        live, stale = [], []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.writers_root)
            keys = [item["Key"] for page in pages for item in page.get("Contents", ())]
        except S3_FAILURES as error:
            raise describe_client_error(error, bucket=self.bucket, key=self.writers_root,
                                        endpoint=self.client.meta.endpoint_url) from None
        for key in keys:
            found = self.read(key)
            if found is None:
                continue
            note, now = found
            if note.owner == run_id:
                stale.append(note)
                continue
            finished = is_finished(note.owner)
            if finished or (finished is None and self._expired(note, now)):
                stale.append(note)
            else:
                live.append((note, finished))
        if live:
            live = list({note.owner: (note, finished) for note, finished in live}.values())  # one per run
            described = "; ".join(
                note.describe() + (" (running in this Dagster instance)" if finished is False
                                   else " (not known to this Dagster instance: waits for its note to expire)")
                for note, finished in live)
            raise PrefixBusyError(
                f"{self.what} is in use by {len(live)} run(s): "
                f"{described}. Nothing was deleted; run the cleanup again when they are done")
        return stale


class Heartbeat:
    """Calls `renew` every `interval` seconds on a daemon thread until stopped."""

    def __init__(self, renew: Callable[[], object], interval: float):
        self._stop = threading.Event()
        self._renew = renew
        self.interval = interval
        self._thread = threading.Thread(target=self._run, name="s3-assets-lock-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._renew()
            except S3AssetsError:  # noqa: S110 - a missed renewal only shortens the hold; the next one retries
                pass

    def stop(self) -> None:
        self._stop.set()
