"""Writing one object: skipped when S3 already holds the same bytes, verified by checksum,
and multipart with concurrent parts when it is large.

"The same bytes" is decided by the content's SHA-256, never by the ETag: an ETag is the MD5 of
the content only for single-part uploads without SSE-KMS (a multipart ETag is `md5-of-parts-N`,
an SSE-KMS ETag is opaque). Every upload records the SHA-256 twice: as user metadata
(`x-amz-meta-sha256`, kept by every S3-compatible store, for any upload) and as S3's additional
checksum (`ChecksumAlgorithm=SHA256`: S3 verifies the body against it on arrival and, for a
single-part upload, returns the whole object's checksum on a HEAD with `ChecksumMode=ENABLED`;
for multipart uploads it is a checksum of the parts' checksums, `...-N`, usable only per part).
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from s3_assets.lib.errors import S3_FAILURES, describe_client_error

MULTIPART_THRESHOLD = 16 * 1024 * 1024
SHA256_METADATA = "sha256"  # user metadata: x-amz-meta-sha256, hex


@dataclass(frozen=True)
class Uploaded:
    key: str
    size: int
    etag: str
    md5: str
    sha256: str
    changed: bool  # False: the same bytes were already there


@dataclass(frozen=True)
class StoredObject:
    """What a HEAD says about an object's content."""

    size: int
    etag: str
    recorded_sha256: str | None  # x-amz-meta-sha256, as this project wrote it
    s3_sha256: str | None  # S3's own whole-object SHA-256 (hex); None when absent or composite (multipart)


def stored_object(client: Any, bucket: str, key: str) -> StoredObject | None:
    """HEAD the object (None if there is none)."""
    found = stored_object_and_metadata(client, bucket, key)
    return found[0] if found else None


def stored_object_and_metadata(client: Any, bucket: str, key: str) -> tuple[StoredObject, dict[str, str]] | None:
    """HEAD the object: what it is, and its user metadata (keys lower-cased); None if there is none."""
    try:
        head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as error:
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise
    s3_sha256 = None
    checksum = head.get("ChecksumSHA256") or ""
    if checksum and "-" not in checksum and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
        try:
            s3_sha256 = base64.b64decode(checksum, validate=True).hex()
        except ValueError:
            s3_sha256 = None
    metadata = {str(k).lower(): str(v) for k, v in (head.get("Metadata") or {}).items()}
    recorded = metadata.get(SHA256_METADATA)
    stored = StoredObject(int(head.get("ContentLength") or 0), str(head.get("ETag", "")).strip('"'),
                          recorded.lower() if recorded else None, s3_sha256)
    return stored, metadata


def difference(stored: StoredObject | None, size: int, sha256: str) -> str | None:
    """Why the stored object is not `size` bytes with this SHA-256, in words; None if it is.

    S3's own whole-object checksum wins when there is one (S3 computed it from the bytes);
    otherwise the SHA-256 recorded at upload decides. An object with neither was not written by
    this project and is never taken as equal.
    """
    if stored is None:
        return "the object is not in S3"
    if stored.size != size:
        return f"size {stored.size:,} in S3, {size:,} expected"
    if stored.s3_sha256 is not None:
        if stored.s3_sha256 != sha256:
            return f"SHA-256 {stored.s3_sha256[:16]}… in S3 (S3's checksum), {sha256[:16]}… expected"
        return None
    if stored.recorded_sha256 is None:
        return "no SHA-256 recorded with the object (x-amz-meta-sha256): it was not written by this project"
    if stored.recorded_sha256 != sha256:
        return f"SHA-256 {stored.recorded_sha256[:16]}… recorded in S3, {sha256[:16]}… expected"
    return None


def upload_bytes(client: Any, bucket: str, key: str, body: bytes, *, extra_args: dict | None = None,
                 multipart_threshold: int | None = None, before_write: Callable[[str], None] | None = None) -> Uploaded:
    """Put `body` at `key` unless identical bytes are there already (same size and SHA-256).
    Bodies from `multipart_threshold` bytes (default MULTIPART_THRESHOLD) go multipart.
    `before_write(what)` is called right before the upload starts (a run's lease check: it
    raises to stop the write); not when the bytes are already there."""
    threshold = multipart_threshold or MULTIPART_THRESHOLD
    md5 = hashlib.md5(body, usedforsecurity=False)
    sha256 = hashlib.sha256(body)
    extra = dict(extra_args or {})
    extra["Metadata"] = {**extra.get("Metadata", {}), SHA256_METADATA: sha256.hexdigest()}
    try:
        existing = stored_object(client, bucket, key)
        if existing is not None and difference(existing, len(body), sha256.hexdigest()) is None:
            return Uploaded(key, len(body), existing.etag, md5.hexdigest(), sha256.hexdigest(), changed=False)
        if before_write is not None:
            before_write(f"writing s3://{bucket}/{key}")
        if len(body) < threshold:
            # Content-MD5 and the SHA-256 checksum make S3 reject a body that arrived damaged.
            response = client.put_object(
                Bucket=bucket, Key=key, Body=body, ContentMD5=base64.b64encode(md5.digest()).decode(),
                ChecksumSHA256=base64.b64encode(sha256.digest()).decode(), **extra,
            )
            etag = response["ETag"].strip('"')
        else:
            config = TransferConfig(multipart_threshold=threshold, multipart_chunksize=threshold,
                                    max_concurrency=8)
            client.upload_fileobj(io.BytesIO(body), bucket, key, ExtraArgs={**extra, "ChecksumAlgorithm": "SHA256"},
                                  Config=config)
            etag = client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    except S3_FAILURES as error:
        raise describe_client_error(error, bucket=bucket, key=key, endpoint=client.meta.endpoint_url) from error
    return Uploaded(key, len(body), etag, md5.hexdigest(), sha256.hexdigest(), changed=True)
