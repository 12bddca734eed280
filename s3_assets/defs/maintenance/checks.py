"""Checks that turn red (or yellow) when the objects behind an asset go, and green again when
it is materialized: `object_exists` on each S3 copy, `listing_is_current` on `s3_listing`.

They run with every materialization of their asset; the cleanup job records a failing result of
each for what it deleted (`AssetCheckEvaluation`s from its op), so the catalog, the lineage and
asset health show that the assets no longer describe S3 until the next materialization.
"""

from __future__ import annotations

import pandas as pd
from botocore.exceptions import ClientError
from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    asset_check,
)

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.changes import diff_states, state_of
from s3_assets.lib.errors import describe_client_error
from s3_assets.lib.listing import list_objects
from s3_assets.lib.source import UCI_TABLES, UciTable

OBJECT_EXISTS = "object_exists"
LISTING_IS_CURRENT = "listing_is_current"
LISTING_KEY = AssetKey("s3_listing")


def copy_asset_key(table: UciTable) -> AssetKey:
    return AssetKey(f"{table.copy_name}_csv")


def object_exists_check(table: UciTable) -> AssetChecksDefinition:
    @asset_check(asset=copy_asset_key(table), name=OBJECT_EXISTS,
                 description=f"the object `<prefix>/{table.s3_relative}` is in S3 (fails after a cleanup "
                             "deleted it, until the next materialization)")
    def check(s3_prefix: S3Prefix) -> AssetCheckResult:
        key = s3_prefix.key(table.s3_relative)
        client, bucket = s3_prefix.connect(), s3_prefix.resolved_bucket()
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
                raise describe_client_error(error, bucket=bucket, key=key, endpoint=client.meta.endpoint_url) from None
            return AssetCheckResult(passed=False, metadata={"dagster/uri": s3_prefix.uri(key), "found": False})
        return AssetCheckResult(passed=True, metadata={"dagster/uri": s3_prefix.uri(key), "found": True,
                                                      "size_bytes": head["ContentLength"]})

    return check


@asset_check(asset=LISTING_KEY, name=LISTING_IS_CURRENT,
             description="the listing still describes what is under the prefix (a fresh listing finds no new, "
                         "changed or deleted key); a cleanup records a warning until the next materialization")
def listing_is_current(s3_listing: pd.DataFrame, s3_prefix: S3Prefix) -> AssetCheckResult:
    fresh = list_objects(s3_prefix.connect(), s3_prefix.resolved_bucket(), s3_prefix.root)
    changes = diff_states(state_of(s3_listing["key"], s3_listing["etag"], s3_listing["size"]),
                          state_of(fresh["key"], fresh["etag"], fresh["size"]))
    return AssetCheckResult(passed=not changes, severity=AssetCheckSeverity.WARN,
                            metadata={f"{kind}_keys": count for kind, count in changes.counts().items()})


STALENESS_CHECKS = [*(object_exists_check(t) for t in UCI_TABLES), listing_is_current]
