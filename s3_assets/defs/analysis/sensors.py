"""A sensor for data that someone else put under the prefix, changed or deleted.

Each tick compares the listing with the last one it saw (key -> ETag and size, `diff_states`),
so it sees new keys, deletions and an overwrite within the same second, whatever the keys sort
as. Objects the project's own runs wrote are not counted: an S3 copy whose ETag and size are
what its latest materialization recorded, and a listing equal to what the latest `s3_listing`
materialization recorded (its `state_digest`).

Bounded ticks: a tick lists at most `pages_per_tick` pages, and starts no page after
`seconds_per_tick`; a larger prefix is walked over several ticks, the cursor carrying the
continuation token. The pages walked so far and the last
complete state are Parquet files under the instance's storage directory, not in the cursor
(cursors live in Dagster's database and stay a few hundred bytes).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)

from s3_assets.defs.resources import S3Prefix
from s3_assets.defs.s3_copies.assets import S3_COPY_ASSETS
from s3_assets.lib.changes import Changes, ObjectState, diff_states, state_digest
from s3_assets.lib.listing import RAW_SCHEMA, fast_path, list_page
from s3_assets.lib.text import printable

refresh_listing_job = define_asset_job(
    "refresh_listing", selection=AssetSelection.assets("s3_listing", "file_map", "dataframes"),
    description="Re-list the prefix, rebuild the file map and reload the frames.",
)
STATE_COLUMNS = ["key", "etag", "size"]
SHOWN_KEYS = 20


def _state_from_table(table: pa.Table) -> dict[str, ObjectState]:
    columns = table.select(STATE_COLUMNS).to_pydict()
    return dict(zip(columns["key"], zip(columns["etag"], columns["size"], strict=True), strict=True))


def _own_writes(context: SensorEvaluationContext, s3_prefix: S3Prefix) -> dict[str, ObjectState]:
    """key -> (ETag, size) of the S3 copies as their latest materializations recorded them."""
    own: dict[str, ObjectState] = {}
    for copy in S3_COPY_ASSETS:
        event = context.instance.get_latest_materialization_event(copy.key)
        materialization = event.asset_materialization if event else None
        if materialization is None:
            continue
        meta: dict[str, Any] = {name: value.value for name, value in materialization.metadata.items()}
        uri, etag = meta.get("dagster/uri") or meta.get("uri"), meta.get("etag")
        size = meta.get("size_bytes", meta.get("size"))  # "size" in materializations before size_bytes
        # (a copy recorded for another bucket, e.g. before a configuration change, vouches for nothing here)
        bucket, _, key = str(uri or "").removeprefix("s3://").partition("/")
        if bucket == s3_prefix.resolved_bucket() and key and etag is not None and size is not None:
            own[key] = (str(etag).strip('"'), int(size))
    return own


def _listing_digest(context: SensorEvaluationContext) -> str | None:
    event = context.instance.get_latest_materialization_event(AssetKey("s3_listing"))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("state_digest")
    return str(value.value) if value is not None else None


def not_own(changes: Changes, current: dict[str, ObjectState], own: dict[str, ObjectState]) -> Changes:
    """The changes minus new or changed keys whose content is what the project wrote there."""
    return changes.without(key for key in changes.new + changes.changed if own.get(key) == current.get(key))


def build_change_sensor(name: str = "s3_change_sensor", pages_per_tick: int = 100, page_size: int = 1000,
                        seconds_per_tick: float = 20.0) -> SensorDefinition:
    """The change sensor; at most `pages_per_tick` ListObjectsV2 pages of `page_size` a tick,
    and no new page after `seconds_per_tick` (a slow endpoint or a busy machine), so a tick
    stays well inside Dagster's 60 s limit; the rest of the prefix is listed at the next tick."""

    @sensor(name=name, job=refresh_listing_job, minimum_interval_seconds=60,
            default_status=DefaultSensorStatus.STOPPED,
            description="Refresh the listing, file map and frames when objects under the prefix are added, "
                        "changed or deleted by someone else than this project's runs.")
    def change_sensor(context: SensorEvaluationContext, s3_prefix: S3Prefix):
        bucket, root = s3_prefix.resolved_bucket(), s3_prefix.root
        folder = (Path(context.instance.storage_directory()) / "s3_change_sensor"
                  / hashlib.sha256(f"{name}\x00{bucket}\x00{root}".encode()).hexdigest()[:16])
        cursor = json.loads(context.cursor) if context.cursor else {}
        sweep, token = cursor.get("sweep") or uuid.uuid4().hex, cursor.get("token")
        parts = folder / f"sweep-{sweep}"
        if token is None and parts.exists():  # a sweep that never finished: start it again
            shutil.rmtree(parts)
        parts.mkdir(parents=True, exist_ok=True)
        client, batches, pages, started = s3_prefix.connect(), [], 0, time.monotonic()
        with fast_path(client):
            while pages < pages_per_tick and (pages == 0 or time.monotonic() - started < seconds_per_tick):
                page = list_page(client, Bucket=bucket, Prefix=root, MaxKeys=page_size,
                                 **({"ContinuationToken": token} if token else {}))
                batches.append(page.rows)
                pages, token = pages + 1, page.token
                if token is None:
                    break
        pq.write_table(pa.Table.from_batches(batches, schema=RAW_SCHEMA).select(STATE_COLUMNS),
                       parts / f"part-{len(list(parts.iterdir())):06d}.parquet")
        if token is not None:
            listed = sum(pq.read_metadata(p).num_rows for p in parts.iterdir())
            return SensorResult(skip_reason=SkipReason(f"listing in progress: {listed:,} objects so far"),
                                cursor=json.dumps({"sweep": sweep, "token": token, "pages": pages}))
        current_table = pa.concat_tables(pq.read_table(p) for p in sorted(parts.iterdir()))
        current = _state_from_table(current_table)
        baseline_path = folder / "state.parquet"
        baseline = _state_from_table(pq.read_table(baseline_path)) if baseline_path.exists() else None
        pq.write_table(current_table, folder / "state.parquet.new")
        (folder / "state.parquet.new").replace(baseline_path)
        shutil.rmtree(parts)
        done = json.dumps({"sweep": None, "token": None, "pages": pages, "objects": len(current)})
        if baseline is None:
            return SensorResult(skip_reason=SkipReason(f"baseline: {len(current):,} object(s) under the prefix"),
                                cursor=done)
        changes = diff_states(baseline, current)
        if changes and _listing_digest(context) == state_digest(current):
            changes = Changes()  # the latest s3_listing already describes exactly this
        changes = not_own(changes, current, _own_writes(context, s3_prefix))
        if not changes:
            return SensorResult(skip_reason=SkipReason("no object added, changed or deleted by others"), cursor=done)
        for kind, keys in (("new", changes.new), ("changed", changes.changed), ("deleted", changes.deleted)):
            if keys:
                shown = ", ".join(f"'{printable(key)}'" for key in keys[:SHOWN_KEYS])
                more = f" and {len(keys) - SHOWN_KEYS:,} more" if len(keys) > SHOWN_KEYS else ""
                context.log.info(f"{len(keys):,} {kind}: {shown}{more}")
        counts = changes.counts()
        tags = {"s3_assets/new_objects": str(counts["new"]), "s3_assets/overwritten_objects": str(counts["changed"]),
                "s3_assets/deleted_objects": str(counts["deleted"]),
                "s3_assets/changed_objects": str(len(changes))}  # all three together
        return SensorResult(run_requests=[RunRequest(run_key=f"{sweep}", tags=tags)], cursor=done)

    return change_sensor


s3_change_sensor = build_change_sensor()
