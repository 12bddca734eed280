"""`s3_file_partitions_sensor`: keeps one `s3_files` partition per data file under the prefix.

Each tick lists the prefix, compares every data file's (ETag, size) with the partitions that
exist and the state each was last requested for, and returns a `SensorResult` that adds the
partitions of new files, deletes those of deleted files, and requests a run for each new or
changed file. Dagster's limits are enforced: at most 25,000 partition changes and runs a tick
(the rest are found again next tick), at most 100,000 partitions (new files beyond are refused,
with a warning naming how many). The state is a Parquet file under the instance's storage
directory, not in the cursor.
"""


import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dagster import (
    DefaultSensorStatus,
    OpExecutionContext,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    job,
    op,
    sensor,
)

from s3_assets.defs.resources import S3Prefix
from s3_assets.lib.changes import ObjectState
from s3_assets.lib.file_partitions import MAX_CHANGES_PER_TICK, MAX_PARTITIONS, partition_key, plan_partitions
from s3_assets.lib.listing import list_objects
from s3_assets.lib.text import printable
from s3_assets.per_file.assets import EXTENSIONS, S3_FILES, load_files_job, s3_files

SHOWN = 10


def data_files(s3_prefix: S3Prefix) -> dict[str, ObjectState]:
    """partition key -> (ETag, size) of every data file under the prefix."""
    root = s3_prefix.root
    listing = list_objects(s3_prefix.connect(), s3_prefix.resolved_bucket(), root)
    files = listing[~listing["is_folder"] & listing["extension"].isin(list(EXTENSIONS))]
    return {partition_key(key[len(root):]): (str(etag), int(size))
            for key, etag, size in zip(files["key"], files["etag"], files["size"], strict=True)}


def _read_state(path: Path) -> dict[str, ObjectState]:
    if not path.exists():
        return {}
    columns = pq.read_table(path).to_pydict()
    return dict(zip(columns["partition"], zip(columns["etag"], columns["size"], strict=True), strict=True))


def _write_state(path: Path, state: dict[str, ObjectState]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = sorted(state)
    table = pa.table({"partition": keys, "etag": [state[k][0] for k in keys], "size": [state[k][1] for k in keys]})
    pq.write_table(table, path.with_suffix(".new"))
    path.with_suffix(".new").replace(path)


def build_file_partitions_sensor(name: str = "s3_file_partitions_sensor", max_changes: int = MAX_CHANGES_PER_TICK,
                                 max_partitions: int = MAX_PARTITIONS) -> SensorDefinition:
    @sensor(name=name, job=load_files_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.STOPPED,
            description="One `s3_files` partition per CSV file under the prefix: adds and deletes partitions as "
                        "files come and go, and materializes new and changed files.")
    def file_partitions_sensor(context: SensorEvaluationContext, s3_prefix: S3Prefix):
        bucket, root = s3_prefix.resolved_bucket(), s3_prefix.root
        state_path = (Path(context.instance.storage_directory()) / name
                      / hashlib.sha256(f"{bucket}\x00{root}".encode()).hexdigest()[:16] / "state.parquet")
        current = data_files(s3_prefix)
        known = set(context.instance.get_dynamic_partitions(S3_FILES))
        plan = plan_partitions(known, _read_state(state_path), current, max_changes, max_partitions)
        tick = (json.loads(context.cursor).get("tick", 0) if context.cursor else 0) + 1
        if plan.refused:
            context.log.warning(
                f"{len(plan.refused):,} new file(s) not added as partitions: {s3_files.name} would exceed "
                f"{max_partitions:,} partitions (Dagster's recommended maximum per asset), e.g. "
                + ", ".join(f"'{printable(k)}'" for k in plan.refused[:SHOWN]))
        if plan.carried:
            context.log.info(f"{plan.carried:,} change(s) left for the next tick (at most {max_changes:,} a tick)")
        for verb, keys in (("adding", plan.add), ("deleting", plan.delete), ("running", plan.run)):
            if keys:
                more = f" and {len(keys) - SHOWN:,} more" if len(keys) > SHOWN else ""
                context.log.info(f"{verb} {len(keys):,}: " + ", ".join(f"'{printable(k)}'" for k in keys[:SHOWN]) + more)
        _write_state(state_path, plan.baseline)
        cursor = json.dumps({"tick": tick, "partitions": len(known) + len(plan.add) - len(plan.delete)})
        if not (plan.add or plan.delete or plan.run):
            reason = "partitions match the files under the prefix"
            if plan.refused:
                reason = f"{len(plan.refused):,} new file(s) refused: more than {max_partitions:,} partitions"
            return SensorResult(skip_reason=SkipReason(reason), cursor=cursor)
        requests: list[Any] = []
        if plan.add:
            requests.append(s3_files.build_add_request(plan.add))
        if plan.delete:
            requests.append(s3_files.build_delete_request(plan.delete))
        return SensorResult(
            run_requests=[RunRequest(partition_key=key, run_key=f"{tick}:{key}") for key in plan.run],
            dynamic_partitions_requests=requests, cursor=cursor,
        )

    return file_partitions_sensor


s3_file_partitions_sensor = build_file_partitions_sensor()


@op(description="Add and delete `s3_files` partitions so there is one per CSV file under the prefix (what the "
                "sensor does each minute, without requesting runs: backfill `load_files` afterwards).")
def sync_file_partitions(context: OpExecutionContext, s3_prefix: S3Prefix) -> None:
    current = data_files(s3_prefix)
    known = set(context.instance.get_dynamic_partitions(S3_FILES))
    plan = plan_partitions(known, {}, current, max_changes=MAX_PARTITIONS, max_partitions=MAX_PARTITIONS)
    if plan.add:
        context.instance.add_dynamic_partitions(S3_FILES, plan.add)
    for key in plan.delete:
        context.instance.delete_dynamic_partition(S3_FILES, key)
    if plan.refused:
        context.log.warning(f"{len(plan.refused):,} file(s) not added: more than {MAX_PARTITIONS:,} partitions")
    context.log.info(f"{len(plan.add):,} partition(s) added, {len(plan.delete):,} deleted; "
                     f"{len(known) + len(plan.add) - len(plan.delete):,} in all")


@job(description="One `s3_files` partition per CSV file under the prefix, now (see s3_file_partitions_sensor).")
def sync_file_partitions_job():
    sync_file_partitions()
