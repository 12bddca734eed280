"""One partition per data file under the prefix: each file loaded into its own DataFrame,
stored by the IO manager as its own Parquet output."""

from dagster import (
    AssetExecutionContext,
    AssetSelection,
    DataVersion,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
    in_process_executor,
)

from s3_assets.defs.metadata import column_schema
from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.file_partitions import relative_key
from s3_assets.lib.loading import load_frames

PER_FILE_GROUP = "per_file"
EXTENSIONS = ("csv",)
S3_FILES = "s3_files"
s3_files = DynamicPartitionsDefinition(name=S3_FILES)


@asset(group_name=PER_FILE_GROUP, kinds={"s3", "pandas"}, partitions_def=s3_files)
def file_frame(context: AssetExecutionContext, s3_prefix: S3Prefix) -> MaterializeResult:
    """One CSV file under the prefix as a DataFrame (partition = the file; see
    `s3_file_partitions_sensor`). Its data version is the object's ETag."""
    key = s3_prefix.key(relative_key(context.partition_key))
    client, bucket = s3_prefix.connect(), s3_prefix.resolved_bucket()
    head = client.head_object(Bucket=bucket, Key=key)
    frame = load_frames(client, bucket, {"file": key}, {key: head["ContentLength"]}, max_workers=1,
                        botocore_only=bool(s3_prefix.bucket_owner()), origin=s3_prefix.s3.client_origin())["file"]
    etag = head["ETag"].strip('"')
    return MaterializeResult(value=frame, data_version=DataVersion(etag), metadata={
        "dagster/uri": MetadataValue.text(s3_prefix.uri(key)),  # copyable text: an s3:// link opens nothing
        "dagster/row_count": len(frame),
        "dagster/column_schema": column_schema(frame),
        "source_etag": etag,
        "source_size": int(head["ContentLength"]),
    })


# One partition per run, each run in process: under the cluster's run launcher a run is one
# Celery task, so a backfill spreads over the workers (a Celery executor inside a run on a
# worker would wait for a free worker while holding one).
load_files_job = define_asset_job(
    "load_files", selection=AssetSelection.assets(file_frame), executor_def=in_process_executor,
    description="Load one file (one partition) into its Parquet output; backfill it for many files.",
)
