"""Jobs and schedules over the whole graph, and the few lines that end a whole-graph run: where
the data is and how to read it from a notebook."""

from __future__ import annotations

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    HookContext,
    ScheduleDefinition,
    define_asset_job,
    success_hook,
)

from s3_assets.defs.executors import held_multiprocess_executor
from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.text import shown_url

# The asset that nothing else depends on: its step is the last asset step of a whole-graph run
# (a test keeps this true), so the summary after it is the end of the run's log.
LAST_ASSET = "modelling_table"


def where_the_data_is(s3_prefix: S3Prefix) -> str:
    """The run's closing lines: bucket, prefix, endpoint (not on AWS), and the notebook lines
    that read the copies with pandas and the typed frames through the IO manager. No secret:
    the credentials stay in `storage_options()`, which the snippet calls."""
    bucket, target = s3_prefix.resolved_bucket(), s3_prefix.s3.target
    # the run's client: the server it wrote to, as it may be shown (no user part)
    endpoint = shown_url(str(s3_prefix.connect().meta.endpoint_url))
    if target == "local":
        where = f"on the embedded S3 at {endpoint} (.venv/bin/s3-assets-local status)"
    elif target == "custom":
        where = f"at {endpoint}"
    else:
        where = "on AWS S3"
    start = "s3_prefix.s3.start_local_server()  # the embedded S3, if it has stopped\n    " if target == "local" else ""
    return (
        f"Your data: the UCI copies are in {s3_prefix.uri(s3_prefix.key('raw/'))} (bucket {bucket}, prefix "
        f"{s3_prefix.root or '(the bucket root)'}) {where}; the typed frames are stored under "
        f"{s3_prefix.uri(s3_prefix.outputs_root())}.\n"
        "Read them in a notebook (same S3_ASSETS_* settings as this run):\n"
        "    import pandas as pd\n"
        "    from s3_assets.settings import build_resources\n"
        "    from s3_assets.definitions import defs\n"
        "    s3_prefix = build_resources()['s3_prefix']\n"
        f"    {start}"
        f"train = pd.read_csv('{s3_prefix.uri(s3_prefix.key('raw/train.csv'))}', "
        "storage_options=s3_prefix.s3.storage_options())\n"
        "    table = defs.load_asset_value('modelling_table')  # or 'dataframes': the typed frames\n"
        "In the UI: .venv/bin/dg dev, then http://127.0.0.1:3000 (README, 'See your data')."
    )


@success_hook(name="where_the_data_is", required_resource_keys={"s3_prefix"})
def where_the_data_is_hook(context: HookContext) -> None:
    """After the last asset step of a whole-graph run: say where the data went."""
    if context.step_key == LAST_ASSET:
        context.log.info(where_the_data_is(context.resources.s3_prefix))


refresh_all_job = define_asset_job(
    "refresh_all", selection=AssetSelection.all(), description="Materialize the whole asset graph.",
    hooks={where_the_data_is_hook},
)

# Each step in its own process: what dagster-k8s / dagster-celery executors do across machines.
# Step outputs travel through the S3 IO manager, which every process can reach.
refresh_all_multiprocess_job = define_asset_job(
    "refresh_all_multiprocess", selection=AssetSelection.all(), executor_def=held_multiprocess_executor,
    description="The whole graph, each step in its own process (slower here: see docs/EXECUTORS.md).",
    hooks={where_the_data_is_hook},
)


daily_refresh_schedule = ScheduleDefinition(
    name="daily_refresh", job=refresh_all_job, cron_schedule="0 3 * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Refresh the whole asset graph every day at 03:00.",
)
