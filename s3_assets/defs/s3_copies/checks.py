"""Each S3 copy is its raw table: same size and MD5 as `to_csv(index=False)`."""


import hashlib

import pandas as pd
from dagster import AssetCheckResult, AssetChecksDefinition, AssetIn, asset_check

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.source import UCI_TABLES, UciTable


def copy_matches_raw_check(table: UciTable) -> AssetChecksDefinition:
    @asset_check(asset=f"{table.copy_name}_csv", name="matches_raw_table", additional_ins={"frame": AssetIn(table.asset)},
                 description="the S3 object has the size and MD5 ETag of the raw table's to_csv(index=False)")
    def check(frame: pd.DataFrame, s3_prefix: S3Prefix) -> AssetCheckResult:
        body = frame.to_csv(index=False).encode()
        key = s3_prefix.key(table.s3_relative)
        head = s3_prefix.connect().head_object(Bucket=s3_prefix.resolved_bucket(), Key=key)
        found = {"size": head["ContentLength"], "etag": head["ETag"].strip('"'),
                 "expected_size": len(body), "expected_md5": hashlib.md5(body, usedforsecurity=False).hexdigest()}
        passed = found["size"] == found["expected_size"] and found["etag"] == found["expected_md5"]
        return AssetCheckResult(passed=passed, metadata={**found, "uri": s3_prefix.uri(key)})

    return check


COPY_CHECKS = [copy_matches_raw_check(t) for t in UCI_TABLES]
