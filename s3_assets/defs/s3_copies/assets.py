"""The S3 copies of the raw tables under `<prefix>/raw/`, byte-identical to the notebook's
`to_csv(index=False)`."""


import pandas as pd
from dagster import AssetExecutionContext, AssetIn, AssetsDefinition, MaterializeResult, MetadataValue, asset

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.source import UCI_TABLES, UciTable
from s3_assets.lib.uploading import upload_bytes

S3_GROUP = "s3_copies"


def s3_copy_asset(table: UciTable) -> AssetsDefinition:
    @asset(name=f"{table.copy_name}_csv", group_name=S3_GROUP, kinds={"s3", "csv"},
           ins={"frame": AssetIn(table.asset)},
           description=f"s3://<bucket>/<prefix>/{table.s3_relative}: the `{table.asset}` table as the notebook "
                       "wrote it (`to_csv(index=False)`).")
    def s3_copy(context: AssetExecutionContext, frame: pd.DataFrame, s3_prefix: S3Prefix) -> MaterializeResult:
        body = frame.to_csv(index=False).encode()
        key = s3_prefix.key(table.s3_relative)
        uploaded = upload_bytes(s3_prefix.connect(), s3_prefix.resolved_bucket(), key, body,
                                extra_args=s3_prefix.write_args())
        context.log.info(f"{'wrote' if uploaded.changed else 'unchanged'}: {s3_prefix.uri(key)} ({uploaded.size:,} bytes)")
        return MaterializeResult(metadata={
            "uri": MetadataValue.path(s3_prefix.uri(key)),
            "size": uploaded.size,
            "etag": uploaded.etag,
            "md5": uploaded.md5,
            "uploaded": uploaded.changed,
            "dagster/row_count": len(frame),
            "open": MetadataValue.url(s3_prefix.browse_url(key)),
        })

    return s3_copy


S3_COPY_ASSETS = [s3_copy_asset(table) for table in UCI_TABLES]
