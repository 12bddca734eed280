"""The cleanup job: delete everything under the prefix (and the project's stored outputs for it)
and nothing else, on demand or weekly. A dry run unless `dry_run: false` is written out."""

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    Config,
    DefaultScheduleStatus,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    ScheduleDefinition,
    job,
    op,
)
from pydantic import Field

from s3_assets.dagster_internals import AssetCheckEvaluationTargetMaterializationData  # not public in 1.13
from s3_assets.defs.maintenance.checks import (
    LISTING_IS_CURRENT,
    LISTING_KEY,
    OBJECT_EXISTS,
    copy_asset_key,
)
from s3_assets.defs.metadata import code_block
from s3_assets.defs.resources import S3Prefix, normalise_prefix
from s3_assets.lib.changes import state_digest, state_of
from s3_assets.lib.cleanup import CleanupError, CleanupReport, clean
from s3_assets.lib.errors import ConfigError, S3AssetsError
from s3_assets.lib.listing import list_objects
from s3_assets.lib.prefix_lock import PrefixLocks, locks_root
from s3_assets.lib.source import UCI_TABLES
from s3_assets.lib.text import printable
from s3_assets.per_file.retention import remove_file_partitions

SHOWN_KEYS = 50


class CleanupConfig(Config):
    dry_run: bool = Field(default=True, description="only list what would be deleted; write `dry_run: false` to delete")
    keep_outputs: bool = Field(default=False, description="keep the stored step outputs under `<io_prefix>/<prefix>/`")
    delete_versions: bool = Field(
        default=False, description="versioned bucket: also delete every old version and delete marker under the prefix")


def refuse_overlap(s3_prefix: S3Prefix) -> None:
    """The data prefix and the IO prefix must not contain each other: deleting one would delete
    the other's objects (for every data prefix, not only this one)."""
    data_root, io_root = s3_prefix.destructive_root(), normalise_prefix(s3_prefix.io_prefix)
    if not io_root or io_root.startswith(data_root) or data_root.startswith(io_root):
        raise ConfigError(
            f"refusing to clean up: S3_ASSETS_PREFIX {s3_prefix.prefix!r} and S3_ASSETS_IO_PREFIX "
            f"{s3_prefix.io_prefix!r} overlap, so the cleanup would delete stored outputs (or data) it was not "
            "asked to; choose prefixes where neither contains the other")


def _keys_block(keys: list[str]) -> MetadataValue:
    shown = keys[:SHOWN_KEYS] + ([f"... and {len(keys) - SHOWN_KEYS} more"] if len(keys) > SHOWN_KEYS else [])
    return code_block(shown) if keys else MetadataValue.text("(none)")


def _target_of(context: OpExecutionContext, asset_key: AssetKey) -> AssetCheckEvaluationTargetMaterializationData | None:
    records = context.instance.fetch_materializations(asset_key, limit=1).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=records[0].storage_id, run_id=records[0].run_id, timestamp=records[0].timestamp)


def staleness_evaluations(context: OpExecutionContext, s3_prefix: S3Prefix, report: CleanupReport,
                          deleted: set[str], client: Any) -> Iterator[AssetCheckEvaluation]:
    """Failing check results for the assets whose objects this cleanup deleted.

    The listing's result carries `state_digest`: the fingerprint of what is under the prefix
    once the cleanup is done, so that the change sensor counts the cleanup's deletions as the
    project's own (like a listing it wrote), not as someone else's change."""
    where = f"cleanup run {context.run_id}"
    for table in UCI_TABLES:
        key = s3_prefix.key(table.s3_relative)
        if key in deleted:
            asset_key = copy_asset_key(table)
            yield AssetCheckEvaluation(
                asset_key=asset_key, check_name=OBJECT_EXISTS, passed=False,
                target_materialization_data=_target_of(context, asset_key),
                description=f"{where} deleted {s3_prefix.uri(key)}; materialize the asset to write it again",
                metadata={"dagster/uri": s3_prefix.uri(key), "found": False, "deleted_by_run": context.run_id})
    data_deleted = [key for key in deleted if key.startswith(s3_prefix.root)]
    if data_deleted:
        yield AssetCheckEvaluation(
            asset_key=LISTING_KEY, check_name=LISTING_IS_CURRENT, passed=False, severity=AssetCheckSeverity.WARN,
            target_materialization_data=_target_of(context, LISTING_KEY),
            description=f"{where} deleted {len(data_deleted)} object(s) under {s3_prefix.uri(s3_prefix.root)}",
            metadata={"deleted_keys": len(data_deleted), "deleted_by_run": context.run_id,
                      **after_cleanup_digest(context, client, s3_prefix)})


def after_cleanup_digest(context: OpExecutionContext, client: Any, s3_prefix: S3Prefix) -> dict[str, str]:
    """`state_digest` of what the cleanup left, so the change sensor knows the deletions as the
    project's own. Without it (the listing failed) the sensor starts one refresh; the deletions'
    results are recorded either way."""
    try:
        left = list_objects(client, s3_prefix.resolved_bucket(), s3_prefix.root)
    except S3AssetsError as error:
        context.log.warning(f"no state_digest recorded (the change sensor may start one refresh): {error}")
        return {}
    return {"state_digest": state_digest(state_of(left["key"], left["etag"], left["size"]))}


@op(out=Out(Nothing), description="Delete every object under the configured prefix (`S3_ASSETS_PREFIX`) and the "
                                  "project's stored outputs for it, and nothing else. A dry run unless "
                                  "`dry_run: false`.")
def delete_objects_under_prefix(context: OpExecutionContext, config: CleanupConfig, s3_prefix: S3Prefix):
    refuse_overlap(s3_prefix)  # before any request
    data_root, outputs_root = s3_prefix.destructive_root(), s3_prefix.outputs_root()
    roots = [data_root] + ([] if config.keep_outputs else [outputs_root])
    client, bucket = s3_prefix.cleanup_client(), s3_prefix.resolved_bucket()
    locks = PrefixLocks(client, bucket, locks_root(outputs_root), what=s3_prefix.uri(data_root))
    run_status = context.instance.get_run_by_id

    def is_finished(run_id: str) -> bool | None:
        run = run_status(run_id)
        return None if run is None else run.is_finished

    def run_clean() -> tuple[CleanupReport, CleanupError | None]:
        try:
            return clean(client, bucket, roots, dry_run=config.dry_run, delete_versions=config.delete_versions,
                         exclude=(locks.root,)), None
        except CleanupError as error:
            return error.report, error

    if config.dry_run:
        report, failure = run_clean()
    else:
        with locks.cleanup(context.run_id, is_finished):
            report, failure = run_clean()
            deleted = set(report.keys) - {label.split(" (version ", 1)[0] for label in report.not_deleted()}
            # Recorded while the prefix is still held: no run can write it again before these land.
            yield from staleness_evaluations(context, s3_prefix, report, deleted, client)
            # Dagster's data-retention pattern: the per-file partitions of deleted files go too.
            remove_file_partitions(context, s3_prefix, sorted(deleted))
    if failure is not None:
        raise failure
    verb = "would delete" if config.dry_run else "deleted"
    data_keys, output_keys = report.keys_under(data_root), report.keys_under(outputs_root)
    context.log.info(
        f"{verb} {len(data_keys)} object(s) under {printable(s3_prefix.uri(data_root))} and {len(output_keys)} stored "
        f"output object(s) under {printable(s3_prefix.uri(outputs_root))}"
        + (" (kept: keep_outputs)" if config.keep_outputs else "") + f"; {report.versioning_note()}")
    yield Output(None, metadata={
        "dry_run": config.dry_run,
        "prefix": s3_prefix.uri(data_root),
        "objects": len(data_keys),
        "bytes": sum(t.size for t in report.targets if t.key.startswith(data_root)),
        "keys": _keys_block(data_keys),
        "stored_outputs": "kept (keep_outputs)" if config.keep_outputs else s3_prefix.uri(outputs_root),
        "stored_output_objects": len(output_keys),
        "stored_output_keys": _keys_block(output_keys),
        "bucket_versioning": report.versioning or "never enabled",
        "versioning": report.versioning_note(),
        "versions_and_markers": len(report.targets) if report.delete_versions and report.versioned else 0,
    })


@job(description="Delete everything under the configured prefix and its stored outputs. A dry run unless the "
                 "config says `dry_run: false`; also `keep_outputs`, `delete_versions`.")
def cleanup_job():
    delete_objects_under_prefix()


weekly_cleanup_schedule = ScheduleDefinition(
    name="weekly_cleanup", job=cleanup_job, cron_schedule="0 4 * * 0",
    default_status=DefaultScheduleStatus.STOPPED,
    run_config={"ops": {"delete_objects_under_prefix": {"config": {"dry_run": False}}}},
    description="Delete everything under the prefix every Sunday at 04:00. Off by default.",
)
