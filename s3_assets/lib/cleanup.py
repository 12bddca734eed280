"""Deleting everything under a prefix, and nothing else.

Keys come from listing `<prefix>/` (with the trailing slash, so `ins_dataset_old/` is never
listed) and each one is checked again before it is sent. Deletes go out in `DeleteObjects`
batches of up to 1,000 keys, several at once; per-key failures in the `Errors` array are
collected and fail the run with the keys named.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from s3_assets.lib.errors import S3_FAILURES, S3AssetsError, describe_client_error
from s3_assets.lib.listing import list_objects

BATCH = 1000


class CleanupError(S3AssetsError, RuntimeError):
    """Some keys were not deleted; the message names them."""

    def __init__(self, message: str, failed: dict[str, str]):
        super().__init__(message)
        self.failed = failed


class OutsidePrefixError(S3AssetsError, RuntimeError):
    """A key outside the prefix reached the delete path: a bug, refused before sending."""


@dataclass
class CleanupReport:
    bucket: str
    root: str
    dry_run: bool
    keys: list[str] = field(default_factory=list)
    bytes: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.keys) - len(self.failed)


def keys_to_delete(keys: list[str], root: str) -> list[str]:
    """The keys, after checking that each starts with a non-empty root ending in '/'."""
    if not root or not root.endswith("/"):
        raise OutsidePrefixError(f"refusing to delete with prefix {root!r}: it must be non-empty and end in '/'")
    outside = [key for key in keys if not key.startswith(root)]
    if outside:
        raise OutsidePrefixError(f"refusing to delete {len(outside)} key(s) outside {root!r}, e.g. {outside[0]!r}")
    return keys


def delete_prefix(client: Any, bucket: str, root: str, *, dry_run: bool, workers: int = 4) -> CleanupReport:
    """Delete every object under root (or, dry run, only say what would go)."""
    listing = list_objects(client, bucket, root)
    keys = keys_to_delete(listing["key"].tolist(), root)
    report = CleanupReport(bucket, root, dry_run, keys=keys, bytes=int(listing["size"].sum()))
    if dry_run or not keys:
        return report
    batches = [keys[start:start + BATCH] for start in range(0, len(keys), BATCH)]

    def delete_batch(batch: list[str]) -> dict[str, str]:
        try:
            response = client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
            )
        except S3_FAILURES as error:
            reason = str(describe_client_error(error, bucket=bucket, key=batch[0], endpoint=client.meta.endpoint_url))
            return {key: reason for key in batch}
        return {item["Key"]: f"{item.get('Code', '?')}: {item.get('Message', '')}" for item in response.get("Errors", ())}

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(batches)))) as pool:
        for failed in pool.map(delete_batch, batches):
            report.failed.update(failed)
    if report.failed:
        shown = "; ".join(f"{key} ({reason})" for key, reason in list(report.failed.items())[:10])
        more = f" and {len(report.failed) - 10} more" if len(report.failed) > 10 else ""
        raise CleanupError(
            f"{len(report.failed)} of {len(keys)} object(s) under s3://{bucket}/{root} were not deleted: {shown}{more}",
            report.failed,
        )
    return report
