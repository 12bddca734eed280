"""Jobs and schedules: refresh the whole graph, and clean up the prefix."""


from dagster import (
    AssetKey,
    AssetObservation,
    AssetSelection,
    Config,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    Output,
    ScheduleDefinition,
    define_asset_job,
    job,
    multiprocess_executor,
    op,
)
from pydantic import Field

from s3_assets.cleanup import delete_prefix
from s3_assets.resources import S3Location

LISTING_KEY = AssetKey("s3_listing")

refresh_all_job = define_asset_job(
    "refresh_all", selection=AssetSelection.all(), description="Materialize the whole asset graph."
)

# Each step in its own process: what dagster-k8s / dagster-celery executors do across machines.
# Step outputs travel through the S3 IO manager, which every process can reach.
refresh_all_multiprocess_job = define_asset_job(
    "refresh_all_multiprocess", selection=AssetSelection.all(), executor_def=multiprocess_executor,
    description="The whole graph, each step in its own process (slower here: see docs/EXECUTORS.md).",
)

refresh_listing_job = define_asset_job(
    "refresh_listing", selection=AssetSelection.assets("s3_listing", "file_map", "dataframes"),
    description="Re-list the prefix, rebuild the file map and reload the frames.",
)


class CleanupConfig(Config):
    dry_run: bool = Field(default=False, description="list what would be deleted, delete nothing")


@op(description="Delete every object under <prefix>/ (and nothing else).")
def delete_objects_under_prefix(context: OpExecutionContext, config: CleanupConfig, location: S3Location):
    root = location.destructive_root()
    bucket = location.resolved_bucket()
    report = delete_prefix(location.client, bucket, root, dry_run=config.dry_run)
    verb = "would delete" if config.dry_run else "deleted"
    context.log.info(f"{verb} {len(report.keys)} object(s), {report.bytes:,} bytes under {location.uri(root)}")
    sample = "\n".join(report.keys[:50]) + (f"\n... {len(report.keys) - 50} more" if len(report.keys) > 50 else "")
    metadata = {
        "dry_run": config.dry_run,
        "objects": len(report.keys),
        "bytes": report.bytes,
        "prefix": location.uri(root),
        "keys": MetadataValue.md(f"```\n{sample}\n```" if report.keys else "(none)"),
    }
    if not config.dry_run and report.keys:
        # The listing asset no longer describes S3: record that on it, visibly in the UI.
        yield AssetObservation(asset_key=LISTING_KEY, metadata={
            "stale": True,
            "reason": MetadataValue.text(f"cleanup run deleted {len(report.keys)} object(s) under {location.uri(root)}"),
            "run_id": context.run_id,
        })
    yield Output(None, metadata=metadata)


@job(description="Delete everything under the configured prefix. Config: dry_run.")
def cleanup_job():
    delete_objects_under_prefix()


daily_refresh_schedule = ScheduleDefinition(
    name="daily_refresh", job=refresh_all_job, cron_schedule="0 3 * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Refresh the whole asset graph every day at 03:00.",
)

weekly_cleanup_schedule = ScheduleDefinition(
    name="weekly_cleanup", job=cleanup_job, cron_schedule="0 4 * * 0",
    default_status=DefaultScheduleStatus.STOPPED,
    run_config={"ops": {"delete_objects_under_prefix": {"config": {"dry_run": False}}}},
    description="Delete everything under the prefix every Sunday at 04:00. Off by default.",
)
