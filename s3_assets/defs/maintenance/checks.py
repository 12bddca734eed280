"""Checks that turn red when the objects behind an asset go, and green again when it is
materialized: `object_exists` on each S3 copy, `listing_is_current` on `s3_listing`, and
`stored_value_exists` on every asset whose value the IO manager stores.

They run with every materialization of their asset. The cleanup job records a failing result
(severity ERROR: asset health shows "Degraded" in the catalog and the lineage, where a WARN shows
nothing) for everything that is missing once it is done, whichever run deleted it (a cleanup
re-run after a killed one deleted nothing, yet `train_csv` is gone): `AssetCheckEvaluation`s from
its op, until the next materialization writes the thing again.
"""

from __future__ import annotations

import pandas as pd
from botocore.exceptions import ClientError
from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib import stored_values
from s3_assets.lib.changes import diff_states, state_of
from s3_assets.lib.errors import describe_client_error
from s3_assets.lib.listing import list_objects
from s3_assets.lib.source import UCI_TABLES, UciTable

OBJECT_EXISTS = "object_exists"
MATCHES_RAW_TABLE = "matches_raw_table"  # `s3_assets.defs.s3_copies.checks`: fails when the object is gone
COPY_CHECKS_OF_S3 = (OBJECT_EXISTS, MATCHES_RAW_TABLE)  # the copies' checks that compare S3 with what was written
LISTING_IS_CURRENT = "listing_is_current"
STORED_VALUE_EXISTS = "stored_value_exists"
LISTING_KEY = AssetKey("s3_listing")
# Every asset whose output the IO manager stores (the S3 copies return no value); a test
# compares this with the `stored_output` metadata of a whole-graph run.
STORED_VALUE_ASSETS = tuple(AssetKey(name) for name in (
    *(t.asset for t in UCI_TABLES), "data_dictionary", "s3_listing", "file_map", "dataframes", "modelling_table"))


def stored_value_folder(s3_prefix: S3Prefix, asset_key: AssetKey) -> str:
    """Where the IO manager stores an unpartitioned asset's value."""
    return s3_prefix.stored_value_folder(asset_key.path)


def copy_asset_key(table: UciTable) -> AssetKey:
    return AssetKey(f"{table.copy_name}_csv")


def object_exists_check(table: UciTable) -> AssetChecksDefinition:
    @asset_check(asset=copy_asset_key(table), name=OBJECT_EXISTS, blocking=True,
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
                         "changed or deleted key); after a cleanup it shows failed (an error) until the next materialization")
def listing_is_current(s3_listing: pd.DataFrame, s3_prefix: S3Prefix) -> AssetCheckResult:
    fresh = list_objects(s3_prefix.connect(), s3_prefix.resolved_bucket(), s3_prefix.root)
    changes = diff_states(state_of(s3_listing["key"], s3_listing["etag"], s3_listing["size"]),
                          state_of(fresh["key"], fresh["etag"], fresh["size"]))
    return AssetCheckResult(passed=not changes, severity=AssetCheckSeverity.WARN,
                            metadata={f"{kind}_keys": count for kind, count in changes.counts().items()})


def stored_value_check(asset_key: AssetKey) -> AssetChecksDefinition:
    @asset_check(asset=asset_key, name=STORED_VALUE_EXISTS, blocking=True,
                 description="the value the IO manager stored for this asset is in S3, so that downstream steps and "
                             "`defs.load_asset_value` can load it (fails after a cleanup removed it, until the next "
                             "materialization)")
    def check(s3_prefix: S3Prefix) -> AssetCheckResult:
        folder = stored_value_folder(s3_prefix, asset_key)
        found = stored_values.exists(s3_prefix.connect(), s3_prefix.resolved_bucket(), folder)
        return AssetCheckResult(passed=found, metadata={"stored_value": MetadataValue.text(
            f"s3://{s3_prefix.resolved_bucket()}/{folder}{stored_values.MANIFEST}"), "found": found})

    return check


STALENESS_CHECKS = [*(object_exists_check(t) for t in UCI_TABLES), listing_is_current,
                    *(stored_value_check(key) for key in STORED_VALUE_ASSETS)]
