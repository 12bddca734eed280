"""Group `per_file`: one dynamic partition per data file under the prefix (`file_frame`), kept
in step with S3 by `s3_file_partitions_sensor`; `load_files` runs one partition per run, so a
backfill fans out over the run launcher (Celery workers with the cluster's DAGSTER_HOME)."""

from dagster import Definitions

from s3_assets.per_file.assets import PER_FILE_GROUP, file_frame, load_files_job, s3_files
from s3_assets.per_file.sensor import s3_file_partitions_sensor, sync_file_partitions_job

defs = Definitions(assets=[file_frame], jobs=[load_files_job, sync_file_partitions_job], sensors=[s3_file_partitions_sensor])

__all__ = ["PER_FILE_GROUP", "defs", "file_frame", "load_files_job", "s3_file_partitions_sensor", "s3_files", "sync_file_partitions_job"]
