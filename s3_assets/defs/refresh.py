"""Jobs and schedules over the whole graph."""

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job, multiprocess_executor

refresh_all_job = define_asset_job(
    "refresh_all", selection=AssetSelection.all(), description="Materialize the whole asset graph."
)

# Each step in its own process: what dagster-k8s / dagster-celery executors do across machines.
# Step outputs travel through the S3 IO manager, which every process can reach.
refresh_all_multiprocess_job = define_asset_job(
    "refresh_all_multiprocess", selection=AssetSelection.all(), executor_def=multiprocess_executor,
    description="The whole graph, each step in its own process (slower here: see docs/EXECUTORS.md).",
)


daily_refresh_schedule = ScheduleDefinition(
    name="daily_refresh", job=refresh_all_job, cron_schedule="0 3 * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Refresh the whole asset graph every day at 03:00.",
)
