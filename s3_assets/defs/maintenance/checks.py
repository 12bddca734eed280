"""Checks that turn red when the objects behind an asset go, and green again when it is
materialized: `object_exists` on each S3 copy, `listing_is_current` on `s3_listing`, and
`stored_value_exists` on every asset whose value the IO manager stores.

They run with every materialization of their asset. After their asset's step in the same run,
they take what S3 answered to that step from its materialization (`s3_assets.defs.this_run`):
the copy's PutObject or HeadObject, the listing the step made, the manifest the IO manager put.
Run on their own, they ask S3. The cleanup job records a failing result
(severity ERROR: asset health shows "Degraded" in the catalog and the lineage, where a WARN shows
nothing) for everything that is missing once it is done, whichever run deleted it (a cleanup
re-run after a killed one deleted nothing, yet `train_csv` is gone): `AssetCheckEvaluation`s from
its op, until the next materialization writes the thing again.
"""


import pandas as pd
from botocore.exceptions import ClientError
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetKey,
    MetadataValue,
    asset_check,
)

from s3_assets.defs.io_manager import VERSION as STORED_VERSION
from s3_assets.defs.resources import S3Prefix
from s3_assets.defs.this_run import answered_in_this_run, materialized_in_this_run
from s3_assets.lib import stored_values
from s3_assets.lib.changes import diff_states, state_digest, state_of
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
    def check(context: AssetCheckExecutionContext, s3_prefix: S3Prefix) -> AssetCheckResult:
        key = s3_prefix.key(table.s3_relative)
        written = materialized_in_this_run(context, copy_asset_key(table))
        if written is not None and written.get("dagster/uri") == s3_prefix.uri(key) \
                and isinstance(written.get("size_bytes"), int):
            return AssetCheckResult(passed=True, metadata={
                "dagster/uri": s3_prefix.uri(key), "found": True, "size_bytes": written["size_bytes"],
                "source": answered_in_this_run("S3's answer to the copy's PutObject or HeadObject")})
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
                         "changed or deleted key; in the run that listed, that run's listing, after which it writes "
                         "nothing there); after a cleanup it shows failed (an error) until the next materialization")
def listing_is_current(context: AssetCheckExecutionContext, s3_listing: pd.DataFrame,
                       s3_prefix: S3Prefix) -> AssetCheckResult:
    listed = materialized_in_this_run(context, LISTING_KEY)
    if listed is not None and listed.get("state_digest") == state_digest(
            state_of(s3_listing["key"], s3_listing["etag"], s3_listing["size"])):
        # Listed by this run, which writes nothing under the prefix after its listing and
        # holds it against the project's cleanups: a second listing would only race with
        # outside writers, which the change sensor watches.
        return AssetCheckResult(passed=True, severity=AssetCheckSeverity.WARN, metadata={
            "new_keys": 0, "changed_keys": 0, "deleted_keys": 0,
            "source": answered_in_this_run("the listing of this run's s3_listing step")})
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
    def check(context: AssetCheckExecutionContext, s3_prefix: S3Prefix) -> AssetCheckResult:
        folder = stored_value_folder(s3_prefix, asset_key)
        stored = materialized_in_this_run(context, asset_key)
        version = stored.get(STORED_VERSION) if stored is not None else None
        if isinstance(version, str) and stored is not None and stored.get("stored_output") == \
                f"s3://{s3_prefix.resolved_bucket()}/{folder}{version}/{stored_values.MANIFEST}":
            # The IO manager put this version's files and both manifests before the
            # materialization was recorded.
            return AssetCheckResult(passed=True, metadata={"stored_value": MetadataValue.text(
                f"s3://{s3_prefix.resolved_bucket()}/{folder}{stored_values.MANIFEST}"), "found": True,
                "source": answered_in_this_run("the IO manager's PutObject of its manifest")})
        found = stored_values.exists(s3_prefix.connect(), s3_prefix.resolved_bucket(), folder)
        return AssetCheckResult(passed=found, metadata={"stored_value": MetadataValue.text(
            f"s3://{s3_prefix.resolved_bucket()}/{folder}{stored_values.MANIFEST}"), "found": found})

    return check


STALENESS_CHECKS = [*(object_exists_check(t) for t in UCI_TABLES), listing_is_current,
                    *(stored_value_check(key) for key in STORED_VALUE_ASSETS)]
