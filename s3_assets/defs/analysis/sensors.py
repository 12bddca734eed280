"""A sensor for data that someone else put under the prefix, changed or deleted.

Each tick compares the listing with the last one it saw (key -> ETag and size, `diff_states`),
so it sees new keys, deletions and an overwrite within the same second, whatever the keys sort
as. Objects the project's own runs wrote are not counted: an S3 copy whose ETag and size are
what its latest materialization recorded, and a listing equal to what the latest `s3_listing`
materialization or the latest cleanup recorded (their `state_digest`).

Bounded ticks: a tick lists at most `pages_per_tick` pages, and starts no page after
`seconds_per_tick`; a larger prefix is walked over several ticks, the cursor carrying the
continuation token. The pages walked so far and the last complete state are Parquet files
under the instance's storage directory, not in the cursor (cursors live in Dagster's database
and stay a few hundred bytes). The cursor names the files it stands for, so an evaluation
whose cursor Dagster does not keep (the UI's "Preview tick result", a failed tick) changes
nothing that the next real tick sees: a page file is named by the pages it holds, and a sweep
is read as the chain of files from its first page to its last. Files no cursor names are
removed after a while; should a file the cursor names be gone all the same, the sensor never
guesses: a lost part of a sweep is listed again, and a lost baseline starts one refresh.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
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

from s3_assets.defs.maintenance.checks import COPY_CHECKS_OF_S3, LISTING_IS_CURRENT, LISTING_KEY
from s3_assets.defs.resources import S3Prefix
from s3_assets.defs.s3_copies.assets import S3_COPY_KEYS
from s3_assets.lib.changes import Changes, ObjectState, diff_states, state_digest
from s3_assets.lib.errors import S3AssetsError
from s3_assets.lib.listing import RAW_SCHEMA, fast_path, list_page
from s3_assets.lib.text import printable

# The copies' checks that compare S3 with what the project wrote: a change someone else made to
# a copy fails them in the run the sensor starts (the copy's health, not only the frames', shows it).
COPY_S3_CHECK_KEYS = [AssetCheckKey(key, name) for key in S3_COPY_KEYS for name in COPY_CHECKS_OF_S3]
refresh_listing_job = define_asset_job(
    "refresh_listing",
    selection=AssetSelection.assets("s3_listing", "file_map", "dataframes") | AssetSelection.checks(*COPY_S3_CHECK_KEYS),
    description="Re-list the prefix, rebuild the file map and reload the frames; check the S3 copies against what "
                "this project wrote (object_exists, matches_raw_table).",
)
STATE_COLUMNS = ["key", "etag", "size"]
SHOWN_KEYS = 20
UNREFERENCED_TTL_SECONDS = 600


def _state_from_table(table: pa.Table) -> dict[str, ObjectState]:
    columns = table.select(STATE_COLUMNS).to_pydict()
    return dict(zip(columns["key"], zip(columns["etag"], columns["size"], strict=True), strict=True))


def _own_writes(context: SensorEvaluationContext, s3_prefix: S3Prefix) -> dict[str, ObjectState]:
    """key -> (ETag, size) of the S3 copies as their latest materializations recorded them."""
    own: dict[str, ObjectState] = {}
    for copy_key in S3_COPY_KEYS:
        event = context.instance.get_latest_materialization_event(copy_key)
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


def _own_digests(context: SensorEvaluationContext, since: float) -> set[str]:
    """Fingerprints of the prefix as the project's own runs left it after `since` (when the
    baseline's listing began): the latest `s3_listing` materialization, and the latest cleanup
    (its `listing_is_current` result). An older one explains no change since the baseline: the
    prefix emptied by someone else looks just like the cleanup's empty prefix of last week."""
    digests = set()
    event = context.instance.get_latest_materialization_event(LISTING_KEY)
    if event is not None and event.asset_materialization is not None and event.timestamp >= since:
        digests.add(event.asset_materialization.metadata.get("state_digest"))
    check = AssetCheckKey(LISTING_KEY, LISTING_IS_CURRENT)
    record = context.instance.event_log_storage.get_latest_asset_check_execution_by_key([check]).get(check)
    evaluation = record.event.dagster_event.event_specific_data if record and record.event and \
        record.event.dagster_event and record.event.timestamp >= since else None
    if isinstance(evaluation, AssetCheckEvaluation):
        digests.add(evaluation.metadata.get("state_digest"))
    return {str(value.value) for value in digests if value is not None}


# Names the sensor makes: uuid4 hex. A cursor is data (the UI can set any text): a name that is
# not one of these never becomes part of a path.
_NAME = re.compile(r"[0-9a-f]{32}")
# A state id no tick ever writes (uuid4 hex has a 4 at position 12): a rejected cursor is
# replaced by one naming it, so the sweep that follows ends in one refresh, not a silent baseline.
REJECTED_STATE = "0" * 32
_COUNTS = ("pages", "sweep_pages", "objects")
_TIMES = ("listed_from", "sweep_from")
_MAX_TOKEN = 4096


class CursorRejected(S3AssetsError, ValueError):
    """A cursor this sensor did not make (set in the UI, or by hand); the message names the field."""


def parse_cursor(raw: str | None) -> dict[str, Any]:
    """The cursor as the sensor wrote it, or CursorRejected naming what is not: only known
    fields, `sweep`/`state` as names the sensor makes, counts and times as finite numbers."""
    if not raw:
        return {}
    try:
        cursor = json.loads(raw)
    except ValueError as error:
        raise CursorRejected(f"the cursor is not JSON ({error})") from None
    if not isinstance(cursor, dict):
        raise CursorRejected("the cursor is not a JSON object")
    unknown = sorted(set(cursor) - {"sweep", "state", "token", *_COUNTS, *_TIMES})
    if unknown:
        raise CursorRejected(f"the cursor has fields the sensor never writes: {printable(', '.join(unknown)[:200])}")
    for field in ("sweep", "state"):
        value = cursor.get(field)
        if value is not None and not (isinstance(value, str) and _NAME.fullmatch(value)):
            raise CursorRejected(f"the cursor's {field!r} is '{printable(str(value)[:100])}', not a name this sensor "
                                 "makes (32 hexadecimal digits)")
    token = cursor.get("token")
    if token is not None and not (isinstance(token, str) and 0 < len(token) <= _MAX_TOKEN and printable(token) == token):
        raise CursorRejected("the cursor's 'token' is not a listing continuation token")
    for field in (*_COUNTS, *_TIMES):
        value = cursor.get(field)
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and not (is_number and math.isfinite(value) and 0 <= value < 1e12
                                      and (field in _TIMES or float(value).is_integer())):
            raise CursorRejected(f"the cursor's {field!r} is '{printable(str(value)[:100])}', not a count or time "
                                 "this sensor writes")
    return cursor


def _state_name(state_id: str | None) -> str:
    return f"state-{state_id}.parquet" if state_id else "state.parquet"  # "state.parquet": before 0.3


def _read_state(folder: Path, state_id: str | None) -> dict[str, ObjectState] | None:
    path = folder / _state_name(state_id)
    return _state_from_table(pq.read_table(path)) if path.exists() else None


def _write_atomically(table: pa.Table, path: Path) -> None:
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    pq.write_table(table, partial)
    partial.replace(path)


_PART = re.compile(r"part-(\d{9})-(\d{9})\.parquet")


def _part_name(first: int, end: int) -> str:
    """The file of pages first..end-1 of a sweep. Evaluations from one cursor may list different
    numbers of pages (a tick stops on time): each writes a file of its own."""
    return f"part-{first:09d}-{end:09d}.parquet"


def _chain(parts: Path, end: int) -> list[Path] | None:
    """Page files that hold pages 0..end-1 of the sweep, in order, or None if some are gone."""
    ends: dict[int, list[int]] = {}
    for path in parts.glob("part-*.parquet"):
        match = _PART.fullmatch(path.name)
        if match and int(match[1]) < int(match[2]) <= end:
            ends.setdefault(int(match[1]), []).append(int(match[2]))
    came_from, frontier = {0: -1}, [0]
    while frontier and end not in came_from:
        first = frontier.pop()
        for stop in ends.get(first, []):
            if stop not in came_from:
                came_from[stop] = first
                frontier.append(stop)
    if end not in came_from:
        return None
    chain, stop = [], end
    while stop:
        chain.append(parts / _part_name(came_from[stop], stop))
        stop = came_from[stop]
    return chain[::-1]


def _forget_unreferenced(folder: Path, keep: set[str]) -> None:
    """Remove states and sweeps that no cursor names any more; mark the kept ones as in use.

    The files are a function of the cursor: a tick writes new ones and names them in the cursor
    it returns, and an evaluation whose cursor Dagster does not keep (a preview, a tick that
    failed) leaves files that nothing names. Those are removed once nothing has used them for
    longer than any evaluation still under way can take (Dagster stops one after 60 s).
    """
    cutoff = time.time() - UNREFERENCED_TTL_SECONDS
    for entry in folder.iterdir():
        try:
            if entry.name in keep:
                os.utime(entry)  # in use: a running sensor's files never age
            elif entry.stat().st_mtime < cutoff:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        except FileNotFoundError:  # another evaluation renamed or removed it meanwhile
            continue


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
            description="Refresh the listing, file map and frames, and check the S3 copies again (object_exists, "
                        "matches_raw_table), when objects under the prefix are added, changed or deleted by someone "
                        "else than this project's runs.")
    def change_sensor(context: SensorEvaluationContext, s3_prefix: S3Prefix):
        bucket, root = s3_prefix.resolved_bucket(), s3_prefix.root
        folder = (Path(context.instance.storage_directory()) / "s3_change_sensor"
                  / hashlib.sha256(f"{name}\x00{bucket}\x00{root}".encode()).hexdigest()[:16])
        try:
            cursor = parse_cursor(context.cursor)
        except CursorRejected as error:  # list afresh, then refresh once: changes since cannot be told
            context.log.warning(f"cursor rejected: {error}; listing the prefix afresh, then starting one refresh")
            cursor = {"state": REJECTED_STATE}
        baseline_id, baseline_from = cursor.get("state"), float(cursor.get("listed_from", 0))
        sweep = cursor.get("sweep") or uuid.uuid4().hex
        token = cursor.get("token") if cursor.get("sweep") else None
        start = int(cursor.get("sweep_pages", 0)) if token else 0
        sweep_from = float(cursor.get("sweep_from", time.time())) if token else time.time()
        parts = folder / f"sweep-{sweep}"
        parts.mkdir(parents=True, exist_ok=True)
        _forget_unreferenced(folder, keep={f"sweep-{sweep}", _state_name(baseline_id)})
        restart = SensorResult(  # pages listed earlier are gone: list them again, never guess
            skip_reason=SkipReason("listing restarted: the pages listed at earlier ticks are no longer stored"),
            cursor=json.dumps({"sweep": None, "token": None, "pages": 0, "state": baseline_id,
                               "listed_from": baseline_from}))
        if start and _chain(parts, start) is None:
            return restart
        client, batches, pages, started = s3_prefix.connect(), [], 0, time.monotonic()
        with fast_path(client):
            while pages < pages_per_tick and (pages == 0 or time.monotonic() - started < seconds_per_tick):
                page = list_page(client, Bucket=bucket, Prefix=root, MaxKeys=page_size,
                                 **({"ContinuationToken": token} if token else {}))
                batches.append(page.rows)
                pages, token = pages + 1, page.token
                if token is None:
                    break
        # Named by the pages it holds: an evaluation whose cursor is never kept (the UI's
        # "Preview tick result") and stops at another page writes a file of its own.
        _write_atomically(pa.Table.from_batches(batches, schema=RAW_SCHEMA).select(STATE_COLUMNS),
                          parts / _part_name(start, start + pages))
        chain = _chain(parts, start + pages)
        if chain is None:
            return restart
        if token is not None:
            listed = sum(pq.read_metadata(p).num_rows for p in chain)
            return SensorResult(skip_reason=SkipReason(f"listing in progress: {listed:,} objects so far"),
                                cursor=json.dumps({"sweep": sweep, "token": token, "pages": pages,
                                                   "sweep_pages": start + pages, "sweep_from": sweep_from,
                                                   "state": baseline_id, "listed_from": baseline_from}))
        current: dict[str, ObjectState] = {}
        for part in chain:
            current.update(_state_from_table(pq.read_table(part)))
        baseline = _read_state(folder, baseline_id)
        state_id = uuid.uuid4().hex
        _write_atomically(pa.table({"key": list(current), "etag": [v[0] for v in current.values()],
                                    "size": pa.array([v[1] for v in current.values()], pa.int64())}),
                          folder / _state_name(state_id))
        done = json.dumps({"sweep": None, "token": None, "pages": pages, "objects": len(current),
                           "state": state_id, "listed_from": sweep_from})
        if baseline is None and baseline_id is None:
            return SensorResult(skip_reason=SkipReason(f"baseline: {len(current):,} object(s) under the prefix"),
                                cursor=done)
        if baseline is None:  # named by the cursor but gone: what changed since is unknown, so refresh
            if baseline_id == REJECTED_STATE:
                context.log.warning("the cursor was rejected (see an earlier tick); starting a refresh, since changes "
                                    "since the last tick cannot be told")
                tags = {"s3_assets/baseline_lost": "true", "s3_assets/cursor_rejected": "true"}
            else:
                context.log.warning(f"the sensor's saved state {baseline_id} is gone; starting a refresh, since "
                                    "changes since the last tick cannot be told")
                tags = {"s3_assets/baseline_lost": "true"}
            return SensorResult(run_requests=[RunRequest(run_key=sweep, tags=tags)], cursor=done)
        changes = diff_states(baseline, current)
        if changes and state_digest(current) in _own_digests(context, since=baseline_from):
            changes = Changes()  # the latest s3_listing, or a cleanup, left exactly this
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
