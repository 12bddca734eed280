"""The cleanup job: delete everything under the prefix and nothing else, on demand or weekly."""


from typing import Any

from dagster import (
    AssetKey,
    AssetObservation,
    Config,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    Output,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

from s3_assets.defs.per_file.retention import remove_file_partitions
from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.cleanup import delete_prefix

LISTING_KEY = AssetKey("s3_listing")

class CleanupConfig(Config):
    dry_run: bool = Field(default=False, description="list what would be deleted, delete nothing")


@op(description="Delete every object under the configured prefix (`S3_ASSETS_PREFIX`) and nothing else.")
def delete_objects_under_prefix(context: OpExecutionContext, config: CleanupConfig, s3_prefix: S3Prefix):
    root = s3_prefix.destructive_root()
    bucket = s3_prefix.resolved_bucket()
    report = delete_prefix(s3_prefix.connect(), bucket, root, dry_run=config.dry_run)
    verb = "would delete" if config.dry_run else "deleted"
    context.log.info(f"{verb} {len(report.keys)} object(s), {report.bytes:,} bytes under {s3_prefix.uri(root)}")
    sample = "\n".join(report.keys[:50]) + (f"\n... {len(report.keys) - 50} more" if len(report.keys) > 50 else "")
    metadata: dict[str, Any] = {
        "dry_run": config.dry_run,
        "objects": len(report.keys),
        "bytes": report.bytes,
        "prefix": s3_prefix.uri(root),
        "keys": MetadataValue.md(f"```\n{sample}\n```" if report.keys else "(none)"),
    }
    if not config.dry_run and report.keys:
        # The listing asset no longer describes S3: record that on it, visibly in the UI.
        yield AssetObservation(asset_key=LISTING_KEY, metadata={
            "stale": True,
            "reason": MetadataValue.text(f"cleanup run deleted {len(report.keys)} object(s) under {s3_prefix.uri(root)}"),
            "run_id": context.run_id,
        })
        # Dagster's data-retention pattern: the per-file partitions of deleted files go too.
        remove_file_partitions(context, s3_prefix, report.keys)
    yield Output(None, metadata=metadata)


@job(description="Delete everything under the configured prefix. Config: dry_run.")
def cleanup_job():
    delete_objects_under_prefix()


weekly_cleanup_schedule = ScheduleDefinition(
    name="weekly_cleanup", job=cleanup_job, cron_schedule="0 4 * * 0",
    default_status=DefaultScheduleStatus.STOPPED,
    run_config={"ops": {"delete_objects_under_prefix": {"config": {"dry_run": False}}}},
    description="Delete everything under the prefix every Sunday at 04:00. Off by default.",
)
