"""Each S3 copy is its raw table: the same size and SHA-256 as `to_csv(index=False)`.

After the copy's own step in the same run, the check takes S3's answer to that step's PutObject or
HeadObject from the copy's materialization (`s3_assets.defs.this_run`); run on its own, it HEADs
the object."""


import hashlib
from typing import Any

import pandas as pd
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetChecksDefinition, AssetIn, AssetKey, asset_check

from s3_assets.defs.resources import S3Prefix
from s3_assets.defs.this_run import answered_in_this_run, materialized_in_this_run
from s3_assets.lib.source import UCI_TABLES, UciTable
from s3_assets.lib.uploading import difference, stored_object


def copy_matches_raw_check(table: UciTable) -> AssetChecksDefinition:
    @asset_check(asset=f"{table.copy_name}_csv", name="matches_raw_table", additional_ins={"frame": AssetIn(table.asset)},
                 description="the S3 object has the size and SHA-256 of the raw table's to_csv(index=False) "
                             "(S3's checksum, or the one recorded at upload; never the ETag, which is no MD5 "
                             "for multipart or SSE-KMS objects); after the copy's step in the same run, S3's answer "
                             "to that step's PutObject or HeadObject")
    def check(context: AssetCheckExecutionContext, frame: pd.DataFrame, s3_prefix: S3Prefix) -> AssetCheckResult:
        body = frame.to_csv(index=False).encode()
        sha256 = hashlib.sha256(body).hexdigest()
        key = s3_prefix.key(table.s3_relative)
        metadata: dict[str, Any] = {"uri": s3_prefix.uri(key), "expected_size": len(body), "expected_sha256": sha256}
        written = copy_written_in_this_run(context, table, s3_prefix.uri(key))
        if written is not None:
            size, etag, written_sha256 = written
            problem = None
            if size != len(body):
                problem = f"size {size:,} written by this run, {len(body):,} expected"
            elif written_sha256 != sha256:
                problem = f"SHA-256 {written_sha256[:16]}… written by this run, {sha256[:16]}… expected"
            metadata.update(size=size, etag=etag, sha256=written_sha256, problem=problem or "none",
                            source=answered_in_this_run("S3's answer to the copy's PutObject or HeadObject"))
            return AssetCheckResult(passed=problem is None, description=problem, metadata=metadata)
        stored = stored_object(s3_prefix.connect(), s3_prefix.resolved_bucket(), key)
        problem = difference(stored, len(body), sha256)
        metadata["problem"] = problem or "none"
        if stored is not None:
            metadata.update(size=stored.size, etag=stored.etag, sha256=stored.s3_sha256 or stored.recorded_sha256 or "")
        metadata["source"] = "HeadObject"
        return AssetCheckResult(passed=problem is None, description=problem, metadata=metadata)

    return check


def copy_written_in_this_run(context: AssetCheckExecutionContext, table: UciTable,
                             uri: str) -> tuple[int, str, str] | None:
    """(size, ETag, SHA-256) of the copy at `uri` as S3 answered its step in this run (its
    PutObject accepted the body against Content-MD5 and the SHA-256 checksum, or its HeadObject
    found those bytes), or None if this run did not materialize it there."""
    written = materialized_in_this_run(context, AssetKey(f"{table.copy_name}_csv"))
    if written is None or written.get("dagster/uri") != uri:
        return None
    size, etag, sha256 = written.get("size_bytes"), written.get("etag"), written.get("sha256")
    if not isinstance(size, int) or not isinstance(etag, str) or not isinstance(sha256, str):
        return None
    return size, etag, sha256


COPY_CHECKS = [copy_matches_raw_check(t) for t in UCI_TABLES]
