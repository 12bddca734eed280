"""Writing an export (the listing's CSV) to S3 without ever replacing an object the project did
not write there itself: the S3 side of the local exports folder's rule.

An export goes to a new key, or over an earlier export that nobody changed since, and nowhere
else. Exports are marked: user metadata `x-amz-meta-s3-assets-export` holds the SHA-256 of the
body written (beside `x-amz-meta-sha256` and S3's own SHA-256 checksum, as every upload of the
project). Before writing, one HEAD (with `ChecksumMode=ENABLED`) decides:

- no object: PUT with `If-None-Match: *` (a writer that got there meanwhile wins; the export
  is refused);
- an object without the mark (written by someone else, or overwritten since by an ordinary
  PUT, which drops user metadata): refused;
- a marked object whose content is no longer the one marked (S3's whole-object checksum, where
  the server keeps one, differs from the mark): refused;
- a marked, unchanged object: PUT with `If-Match: <its ETag>` (changed meanwhile: refused).

A server that refuses conditional writes (501 `NotImplemented`, as LocalStack 4.9.2 on
general-purpose buckets) gets the same PUT without the condition, after the same HEAD; one that
ignores them gives the same. The condition only closes the moment between the HEAD and the PUT;
the HEAD's verdict is the rule, on every server (see docs/RELIABILITY.md, "the listing export").

Also refused: a key under a prefix that a live lock note (a run that writes it, a cleanup that
deletes it; `lib/prefix_lock`) holds, so that no export lands in data someone is writing or
deleting.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from botocore.exceptions import ClientError

from s3_assets.lib.errors import S3_FAILURES, ConfigError, describe_client_error
from s3_assets.lib.prefix_lock import PrefixLocks, overlap_form
from s3_assets.lib.text import printable
from s3_assets.lib.uploading import SHA256_METADATA, difference, stored_object_and_metadata

EXPORT_METADATA = "s3-assets-export"  # x-amz-meta-s3-assets-export: the SHA-256 (hex) of the export's body
MAX_SINGLE_PUT = 5 * 1024**3  # S3's limit for one PutObject
_CONDITION_FAILED = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409", "NoSuchKey", "404"}
_UNSUPPORTED = {"NotImplemented", "501"}


class ExportRefused(ConfigError):
    """The export's target is not the project's to write; the message names it and why."""


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code") or
               error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def held_by(locks: PrefixLocks, key: str) -> str | None:
    """A description of the live lock note whose prefix holds `key`, or None. One LIST of the
    notes folder; a body is read only of a note that keeps its prefixes there."""
    items, now = locks.list_notes()
    wanted = overlap_form(key)
    for note_key, written in items:
        note = locks.parse_key(note_key, written)
        if now >= note.expires:
            continue
        roots = note.roots if note.roots is not None else tuple(locks.read_body(note).get("roots", ()))
        for root in roots:
            if wanted.startswith(overlap_form(root)):
                until = f"{note.expires:%Y-%m-%d %H:%M:%S}"
                doing = "writes" if note.kind == "run" else "deletes"
                return (f"{note.kind} {printable(note.owner)} {doing} s3://{locks.bucket}/{printable(root)} (its lock "
                        f"note {printable(note_key)} counts until {until} UTC unless renewed)")
    return None


def write_export(client: Any, bucket: str, key: str, body: bytes, *, target: str,
                 extra_args: dict[str, Any] | None = None, locks: PrefixLocks | None = None) -> str:
    """Write `body` at s3://bucket/key under the rule above; returns the URI written.

    `target` is the export's setting as given (shown, escaped, in refusals). Raises
    ExportRefused (a ConfigError) naming the target and why; S3OperationError for S3 failures."""
    where = f"export_csv {printable(target)!r} (s3://{bucket}/{printable(key)} as the server stores it)"
    if len(key.encode()) > 1024:
        raise ExportRefused(f"{where}: the key is longer than S3's 1,024 bytes")
    if len(body) > MAX_SINGLE_PUT:
        raise ExportRefused(f"{where}: the listing is larger than one PutObject carries (5 GiB); export it locally")
    sha256 = hashlib.sha256(body)
    md5 = hashlib.md5(body, usedforsecurity=False)
    try:
        if locks is not None:
            holder = held_by(locks, key)
            if holder:
                raise ExportRefused(f"{where} lies under a prefix in use: {holder}. Nothing was written; "
                                    "choose a key outside it, or export when it is done")
        found = stored_object_and_metadata(client, bucket, key)
        condition: dict[str, str]
        if found is None:
            condition = {"IfNoneMatch": "*"}
        else:
            stored, metadata = found
            mark = metadata.get(EXPORT_METADATA, "").lower()
            if not mark:
                raise ExportRefused(f"{where} exists and is not an export the project wrote (it carries no "
                                    f"x-amz-meta-{EXPORT_METADATA}): not replaced; choose a new key")
            if stored.recorded_sha256 != mark or difference(stored, stored.size, mark) is not None:
                raise ExportRefused(f"{where} was written by an export but changed since (its content is not the "
                                    "one the export recorded): not replaced; choose a new key")
            condition = {"IfMatch": f'"{stored.etag.strip(chr(34))}"'}
        extra: dict[str, Any] = dict(extra_args or {})
        arguments = {
            "Bucket": bucket, "Key": key, "Body": body, "ContentType": "text/csv",
            "ContentMD5": base64.b64encode(md5.digest()).decode(),
            "ChecksumSHA256": base64.b64encode(sha256.digest()).decode(),
            **extra,
            "Metadata": {**extra.get("Metadata", {}), SHA256_METADATA: sha256.hexdigest(),
                         EXPORT_METADATA: sha256.hexdigest()},
        }
        try:
            client.put_object(**arguments, **condition)
        except ClientError as error:
            code = _code(error)
            if code in _CONDITION_FAILED:
                raise ExportRefused(
                    f"{where} changed between the check and the write (the server answered {printable(code)} to "
                    f"the conditional PUT): someone else wrote or deleted it; not replaced. Run the export again "
                    f"to see what is there") from None
            if code not in _UNSUPPORTED and _status(error) != 501:
                raise
            client.put_object(**arguments)  # a server without conditional writes: the HEAD's verdict stands
    except S3_FAILURES as error:
        raise describe_client_error(error, bucket=bucket, key=key, endpoint=client.meta.endpoint_url) from None
    return f"s3://{bucket}/{key}"
