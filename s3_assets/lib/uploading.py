"""Writing one object: skipped when S3 already holds the same bytes, verified by checksum,
and multipart with concurrent parts when it is large."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from s3_assets.lib.errors import S3_FAILURES, describe_client_error

MULTIPART_THRESHOLD = 16 * 1024 * 1024


@dataclass(frozen=True)
class Uploaded:
    key: str
    size: int
    etag: str
    md5: str
    changed: bool  # False: the same bytes were already there


def _existing_etag(client: Any, bucket: str, key: str) -> str | None:
    try:
        return client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    except ClientError as error:
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
            return None
        raise


def upload_bytes(client: Any, bucket: str, key: str, body: bytes, *, extra_args: dict | None = None) -> Uploaded:
    """Put `body` at `key` unless identical bytes are there already."""
    md5 = hashlib.md5(body, usedforsecurity=False)
    extra = dict(extra_args or {})
    try:
        existing = _existing_etag(client, bucket, key)
        if existing == md5.hexdigest():
            return Uploaded(key, len(body), existing, md5.hexdigest(), changed=False)
        if len(body) < MULTIPART_THRESHOLD:
            # Content-MD5 makes S3 reject a body that arrived damaged.
            response = client.put_object(
                Bucket=bucket, Key=key, Body=body, ContentMD5=base64.b64encode(md5.digest()).decode(), **extra
            )
            etag = response["ETag"].strip('"')
        else:
            config = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD,
                                    max_concurrency=8)
            client.upload_fileobj(io.BytesIO(body), bucket, key, ExtraArgs=extra or None, Config=config)
            etag = client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
    except S3_FAILURES as error:
        raise describe_client_error(error, bucket=bucket, key=key, endpoint=client.meta.endpoint_url) from error
    return Uploaded(key, len(body), etag, md5.hexdigest(), changed=True)
