"""Turning S3 failures into errors that name the thing at fault and say what to fix.

botocore's own messages name the operation but not the bucket, key or endpoint; and they must
never carry credentials. Everything here builds messages from the error code, the bucket, the
key and the endpoint only.
"""

from __future__ import annotations

from boto3.exceptions import Boto3Error
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from s3_assets.lib.text import printable, shown_url, without_url_secrets

HINTS = {
    "NoSuchBucket": "the bucket does not exist: create it or fix S3_ASSETS_BUCKET",
    "InvalidAccessKeyId": "the access key is not known to this endpoint: check the credentials",
    "SignatureDoesNotMatch": "the secret key does not match the access key: check the credentials",
    "AccessDenied": "the credentials may not do this: see docs/AWS.md, 'Least-privilege IAM policy'",
    "InvalidBucketName": "the bucket name is not valid: fix S3_ASSETS_BUCKET",
    "NoSuchKey": "the object is gone: re-materialize the upstream assets",
    "SlowDown": "the endpoint is throttling: raise S3_ASSETS_MAX_ATTEMPTS or use S3_ASSETS_RETRY_MODE=adaptive",
}


# What an S3 call can raise. Catch these, never `Exception`, around S3 calls: a bug in our own
# code (a hook, a parser) must surface as itself, not as an S3 failure.
S3_FAILURES = (BotoCoreError, ClientError, Boto3Error)


class S3AssetsError(Exception):
    """Base of the project's own errors: one `except S3AssetsError` catches what we raise on
    purpose and lets a bug (a TypeError, say) surface as what it is."""


class ConfigError(S3AssetsError, ValueError):
    """A setting is wrong; the message names the setting and says what to change.

    `fields` names the resource fields at fault, so that the environment reader can name the
    S3_ASSETS_* variables that set them."""

    def __init__(self, message: str, fields: tuple[str, ...] = ()):
        super().__init__(message)
        self.fields = fields


class S3OperationError(S3AssetsError, RuntimeError):
    """An S3 call failed; the message names the endpoint, bucket and key."""

    def __init__(self, message: str, code: str = ""):
        super().__init__(message)
        self.code = code


def describe_client_error(
    error: Exception, *, bucket: str, key: str | None = None, endpoint: str | None = None
) -> S3OperationError:
    """Wrap an S3 failure in a message that names where it happened and what to do."""
    where = f"s3://{bucket}/{printable(key)}" if key is not None else f"bucket {bucket!r}"
    at = f" at {shown_url(endpoint)}" if endpoint else ""
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "") or str(
            error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        )
        operation = getattr(error, "operation_name", "S3 call")
        hint = HINTS.get(code, "")
        if code in ("404", "NotFound") and key is None:
            hint = HINTS["NoSuchBucket"]
        if code == "403" and key is None:
            hint = HINTS["AccessDenied"]
        # The code is the server's text: shown escaped, like a key.
        return S3OperationError(f"{operation} on {where}{at} failed: {printable(code)}" + (f" ({hint})" if hint else ""),
                                code)
    if isinstance(error, (EndpointConnectionError, ConnectTimeoutError)):
        return S3OperationError(
            f"cannot connect to the S3 endpoint{at or ' '} for {where}: {type(error).__name__}. "
            "Is the server running and S3_ASSETS_ENDPOINT_URL right?",
            "EndpointConnectionError",
        )
    if isinstance(error, ReadTimeoutError):
        return S3OperationError(
            f"the S3 endpoint{at} did not answer in time for {where} (raise S3_ASSETS_READ_TIMEOUT?)",
            "ReadTimeout",
        )
    if isinstance(error, NoCredentialsError):
        return S3OperationError(
            f"no AWS credentials found for {where}: set AWS_PROFILE/S3_ASSETS_PROFILE or the "
            "S3_ASSETS_ACCESS_KEY_ID/S3_ASSETS_SECRET_ACCESS_KEY pair",
            "NoCredentials",
        )
    return S3OperationError(f"S3 call on {where}{at} failed: {type(error).__name__}: "
                            f"{printable(without_url_secrets(str(error), endpoint))}",
                            type(error).__name__)
