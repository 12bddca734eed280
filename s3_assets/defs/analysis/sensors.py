"""A sensor for data that someone else put under the prefix.

Its cursor is the newest LastModified seen plus the keys carrying exactly that time (S3 times
have one-second resolution), so an object added or overwritten later is noticed, whatever
its key sorts as: unlike a since-key cursor, which misses keys that sort earlier.
"""

import json

import pandas as pd
from dagster import AssetSelection, DefaultSensorStatus, define_asset_job, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.listing import list_objects


refresh_listing_job = define_asset_job(
    "refresh_listing", selection=AssetSelection.assets("s3_listing", "file_map", "dataframes"),
    description="Re-list the prefix, rebuild the file map and reload the frames.",
)


def changed_since(listing: pd.DataFrame, cursor: dict | None) -> tuple[pd.DataFrame, dict]:
    """Objects newer than the cursor, and the cursor that covers everything listed."""
    if listing.empty:
        return listing, cursor or {"last_modified": None, "keys": []}
    newest = listing["last_modified"].max()
    new_cursor = {"last_modified": newest.isoformat(),
                  "keys": sorted(listing.loc[listing["last_modified"] == newest, "key"])}
    if not cursor or not cursor.get("last_modified"):
        return listing, new_cursor
    seen_time = pd.Timestamp(cursor["last_modified"])
    seen_keys = set(cursor["keys"])
    newer = listing[(listing["last_modified"] > seen_time)
                    | ((listing["last_modified"] == seen_time) & ~listing["key"].isin(seen_keys))]
    return newer, new_cursor


@sensor(job=refresh_listing_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.STOPPED,
        description="Refresh the listing, file map and frames when objects under the prefix are added or changed.")
def s3_change_sensor(context: SensorEvaluationContext, s3_prefix: S3Prefix):
    listing = list_objects(s3_prefix.client, s3_prefix.resolved_bucket(), s3_prefix.root)
    cursor = json.loads(context.cursor) if context.cursor else None
    changed, new_cursor = changed_since(listing, cursor)
    if cursor is None:
        return SensorResult(skip_reason=SkipReason(f"baseline: {len(listing)} object(s) under the prefix"),
                            cursor=json.dumps(new_cursor))
    if changed.empty:
        return SensorResult(skip_reason=SkipReason("no object added or changed"), cursor=json.dumps(new_cursor))
    context.log.info(f"{len(changed)} object(s) added or changed, e.g. {', '.join(changed['key'].head(5))}")
    return SensorResult(
        run_requests=[RunRequest(run_key=f"{new_cursor['last_modified']}:{len(changed)}",
                                 tags={"s3_assets/changed_objects": str(len(changed))})],
        cursor=json.dumps(new_cursor),
    )
