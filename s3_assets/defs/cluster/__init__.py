"""The whole graph on Celery workers (`refresh_all_celery`), for the local cluster
(`s3-assets-cluster start`) or a broker of your own (S3_ASSETS_CELERY_BROKER_URL)."""

from dagster import AssetSelection, define_asset_job

from s3_assets.defs.cluster.executor import STEPS_ON_WORKERS_TAG, s3_celery_executor

refresh_all_celery_job = define_asset_job(
    "refresh_all_celery", selection=AssetSelection.all() - AssetSelection.groups("per_file"),
    executor_def=s3_celery_executor,
    tags={STEPS_ON_WORKERS_TAG: "true"},  # the cluster's run launcher keeps such a run off the workers
    description="The whole graph, each step a Celery task on the cluster's workers (s3-assets-cluster start).",
)
