"""Dagster's data-retention pattern for the per-file partitions: a file's partition goes with
the file. Called by the cleanup job with the keys it deleted."""

from __future__ import annotations

from collections.abc import Iterable

from dagster import OpExecutionContext

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.file_partitions import partition_key
from s3_assets.per_file.assets import S3_FILES, s3_files


def remove_file_partitions(context: OpExecutionContext, s3_prefix: S3Prefix, deleted_keys: Iterable[str]) -> list[str]:
    """Delete the `s3_files` partitions of the deleted data keys; returns the partitions removed."""
    root = s3_prefix.root
    known = set(context.instance.get_dynamic_partitions(S3_FILES))
    gone = sorted({partition_key(key[len(root):]) for key in deleted_keys if key.startswith(root)} & known)
    for key in gone:
        context.instance.delete_dynamic_partition(S3_FILES, key)
    if gone:
        context.log.info(f"removed {len(gone):,} partition(s) of {s3_files.name} whose files were deleted")
    return gone
