"""Each S3 copy is its raw table: the same size and SHA-256 as `to_csv(index=False)`."""


import hashlib
from typing import Any

import pandas as pd
from dagster import AssetCheckResult, AssetChecksDefinition, AssetIn, asset_check

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.source import UCI_TABLES, UciTable
from s3_assets.lib.uploading import difference, stored_object


def copy_matches_raw_check(table: UciTable) -> AssetChecksDefinition:
    @asset_check(asset=f"{table.copy_name}_csv", name="matches_raw_table", additional_ins={"frame": AssetIn(table.asset)},
                 description="the S3 object has the size and SHA-256 of the raw table's to_csv(index=False) "
                             "(S3's checksum, or the one recorded at upload; never the ETag, which is no MD5 "
                             "for multipart or SSE-KMS objects)")
    def check(frame: pd.DataFrame, s3_prefix: S3Prefix) -> AssetCheckResult:
        body = frame.to_csv(index=False).encode()
        sha256 = hashlib.sha256(body).hexdigest()
        key = s3_prefix.key(table.s3_relative)
        stored = stored_object(s3_prefix.connect(), s3_prefix.resolved_bucket(), key)
        problem = difference(stored, len(body), sha256)
        metadata: dict[str, Any] = {"uri": s3_prefix.uri(key), "expected_size": len(body), "expected_sha256": sha256,
                    "problem": problem or "none"}
        if stored is not None:
            metadata.update(size=stored.size, etag=stored.etag, sha256=stored.s3_sha256 or stored.recorded_sha256 or "")
        return AssetCheckResult(passed=problem is None, description=problem, metadata=metadata)

    return check


COPY_CHECKS = [copy_matches_raw_check(t) for t in UCI_TABLES]
